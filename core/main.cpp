// weir: the entry point. Everything else lives in weir_core so the tests can reach it.
#include "core/runtime/cli.hpp"

int main(int argc, char** argv) {
  return weir::core::cli_main(argc, argv);
}
