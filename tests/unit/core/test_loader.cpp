#include "core/plugin/loader.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using weir::core::plugin::plugin_search_path;
using weir::core::plugin::Registry;

TEST_CASE("plugin search path: configured, then WEIR_PLUGIN_PATH, then the default") {
  auto dirs = plugin_search_path({"/a", "/b"}, "/c::/d");
  REQUIRE(dirs.size() == 5);
  CHECK(dirs[0] == "/a");
  CHECK(dirs[1] == "/b");
  CHECK(dirs[2] == "/c");
  CHECK(dirs[3] == "/d");
  CHECK(dirs[4].find("weir/plugins") != std::string::npos);
}

TEST_CASE("a file that is not a shared object is refused with one line naming it") {
  auto dir = std::filesystem::temp_directory_path() / "weir-test-loader";
  std::filesystem::create_directories(dir);
  auto file = dir / "junk.so";
  std::ofstream(file) << "not an ELF file";
  std::filesystem::permissions(file, std::filesystem::perms::owner_read |
                                         std::filesystem::perms::owner_write);
  Registry registry;
  std::vector<std::string> errors;
  CHECK_FALSE(registry.load_file(file.string(), errors));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("plugin \"junk\"") != std::string::npos);
  CHECK(errors[0].find(file.string()) != std::string::npos);
  CHECK(errors[0].find("cannot load") != std::string::npos);

  errors.clear();
  CHECK_FALSE(registry.load_file((dir / "missing.so").string(), errors));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("No such file") != std::string::npos);

  errors.clear();
  std::filesystem::permissions(file, std::filesystem::perms::others_write,
                               std::filesystem::perm_options::add);
  CHECK_FALSE(registry.load_file(file.string(), errors));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("writable by group or others") != std::string::npos);
  std::filesystem::remove_all(dir);
}
