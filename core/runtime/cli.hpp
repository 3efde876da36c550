// The command line: run, check, config dump, env, --version, --help.
#pragma once

namespace weir::core {

int cli_main(int argc, char** argv);

} // namespace weir::core
