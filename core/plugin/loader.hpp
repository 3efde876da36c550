// Finds plugin shared objects, checks their descriptors, and keeps a registry of their modules by
// kind and name. A refused plugin yields one line: plugin "NAME" (PATH): REASON.
#pragma once

#include "weir/abi.h"

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weir::core::plugin {

struct Library; // a loaded shared object; defined in loader.cpp

// One module of a loaded plugin. `library` keeps the shared object loaded while the module is
// referenced, so it outlives every object made from it.
struct Module {
  weir_kind_t kind = 0;
  std::string name;
  const void* vtable = nullptr;
  std::string plugin_name;
  std::string path;
  uint16_t abi_minor = 0;
  std::shared_ptr<Library> library;
};

// "load balancer", "discovery", ... for messages; "lb", "discovery", ... for short labels.
std::string_view kind_noun(weir_kind_t kind);
std::string_view kind_label(weir_kind_t kind);

// Directories searched for plugins, in order: configured plugin-dirs, WEIR_PLUGIN_PATH
// (colon-separated), then the default beside the binary (<bindir>/../lib/weir/plugins).
std::vector<std::string> plugin_search_path(const std::vector<std::string>& configured,
                                            const char* env_plugin_path);

class Registry {
public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Load every "*.so" of each directory. A file name already loaded from an earlier directory is
  // shadowed (skipped). Every refusal is appended to `errors` as one line.
  void load_dirs(const std::vector<std::string>& dirs, std::vector<std::string>& errors);
  // Load one file; false (and one line in `errors`) when refused.
  bool load_file(const std::string& path, std::vector<std::string>& errors);

  const Module* find(weir_kind_t kind, std::string_view name) const;
  std::vector<std::string> names(weir_kind_t kind) const;
  size_t library_count() const { return libraries_; }

private:
  std::map<std::pair<weir_kind_t, std::string>, Module, std::less<>> modules_;
  std::map<std::string, std::string> loaded_files_; // file name -> full path
  size_t libraries_ = 0;
};

} // namespace weir::core::plugin
