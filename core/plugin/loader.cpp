#include "core/plugin/loader.hpp"

#include "weir/certs.h"
#include "weir/discovery.h"
#include "weir/filter.h"
#include "weir/health.h"
#include "weir/lb.h"

#include <boost/dll/shared_library.hpp>
#include <fmt/format.h>

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace weir::core::plugin {

struct Library {
  boost::dll::shared_library lib;
  std::string path;
  std::string name;
};

namespace {

namespace fs = std::filesystem;

// True when `struct_size` covers the member at `offset` of size `size`.
bool covers(uint32_t struct_size, size_t offset, size_t size) {
  return struct_size >= offset + size;
}

#define WEIR_HAS(vt, type, member)                                                                 \
  (covers((vt)->struct_size, offsetof(type, member), sizeof((vt)->member)) &&                      \
   (vt)->member != nullptr)

bool valid_module_name(const char* name) {
  if (name == nullptr || *name == '\0')
    return false;
  for (const char* p = name; *p; ++p) {
    char c = *p;
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
      return false;
  }
  return std::strlen(name) <= 64;
}

// The name of the first required hook missing from a module's vtable, or "" when complete.
std::string missing_hook(weir_kind_t kind, const void* vtable) {
  auto check = [](const void*, std::initializer_list<std::pair<const char*, bool>> hooks) {
    for (const auto& [name, present] : hooks)
      if (!present)
        return std::string(name);
    return std::string();
  };
  switch (kind) {
  case WEIR_KIND_LB: {
    auto* vt = static_cast<const weir_lb_vtable_t*>(vtable);
    return check(vt, {{"config_new", WEIR_HAS(vt, weir_lb_vtable_t, config_new)},
                      {"config_destroy", WEIR_HAS(vt, weir_lb_vtable_t, config_destroy)},
                      {"instance_new", WEIR_HAS(vt, weir_lb_vtable_t, instance_new)},
                      {"instance_destroy", WEIR_HAS(vt, weir_lb_vtable_t, instance_destroy)},
                      {"on_targets", WEIR_HAS(vt, weir_lb_vtable_t, on_targets)},
                      {"pick", WEIR_HAS(vt, weir_lb_vtable_t, pick)}});
  }
  case WEIR_KIND_DISCOVERY: {
    auto* vt = static_cast<const weir_discovery_vtable_t*>(vtable);
    return check(vt, {{"config_new", WEIR_HAS(vt, weir_discovery_vtable_t, config_new)},
                      {"config_destroy", WEIR_HAS(vt, weir_discovery_vtable_t, config_destroy)},
                      {"instance_new", WEIR_HAS(vt, weir_discovery_vtable_t, instance_new)},
                      {"instance_destroy", WEIR_HAS(vt, weir_discovery_vtable_t, instance_destroy)},
                      {"start", WEIR_HAS(vt, weir_discovery_vtable_t, start)}});
  }
  case WEIR_KIND_HEALTH: {
    auto* vt = static_cast<const weir_health_vtable_t*>(vtable);
    return check(vt, {{"config_new", WEIR_HAS(vt, weir_health_vtable_t, config_new)},
                      {"config_destroy", WEIR_HAS(vt, weir_health_vtable_t, config_destroy)},
                      {"instance_new", WEIR_HAS(vt, weir_health_vtable_t, instance_new)},
                      {"instance_destroy", WEIR_HAS(vt, weir_health_vtable_t, instance_destroy)},
                      {"on_targets", WEIR_HAS(vt, weir_health_vtable_t, on_targets)}});
  }
  case WEIR_KIND_FILTER: {
    auto* vt = static_cast<const weir_filter_vtable_t*>(vtable);
    auto missing =
        check(vt, {{"config_new", WEIR_HAS(vt, weir_filter_vtable_t, config_new)},
                   {"config_destroy", WEIR_HAS(vt, weir_filter_vtable_t, config_destroy)},
                   {"instance_new", WEIR_HAS(vt, weir_filter_vtable_t, instance_new)},
                   {"instance_destroy", WEIR_HAS(vt, weir_filter_vtable_t, instance_destroy)}});
    if (!missing.empty())
      return missing;
    if (!WEIR_HAS(vt, weir_filter_vtable_t, on_request) &&
        !WEIR_HAS(vt, weir_filter_vtable_t, on_response))
      return "on_request or on_response";
    return {};
  }
  case WEIR_KIND_CERTS: {
    auto* vt = static_cast<const weir_certs_vtable_t*>(vtable);
    return check(vt, {{"config_new", WEIR_HAS(vt, weir_certs_vtable_t, config_new)},
                      {"config_destroy", WEIR_HAS(vt, weir_certs_vtable_t, config_destroy)},
                      {"instance_new", WEIR_HAS(vt, weir_certs_vtable_t, instance_new)},
                      {"instance_destroy", WEIR_HAS(vt, weir_certs_vtable_t, instance_destroy)},
                      {"start", WEIR_HAS(vt, weir_certs_vtable_t, start)}});
  }
  default:
    return "(unknown kind)";
  }
}

std::string executable_dir() {
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec)
    return ".";
  return exe.parent_path().string();
}

} // namespace

std::string_view kind_noun(weir_kind_t kind) {
  switch (kind) {
  case WEIR_KIND_LB:
    return "load balancer";
  case WEIR_KIND_DISCOVERY:
    return "discovery provider";
  case WEIR_KIND_HEALTH:
    return "health checker";
  case WEIR_KIND_FILTER:
    return "filter";
  case WEIR_KIND_CERTS:
    return "certificate provider";
  default:
    return "module";
  }
}

std::string_view kind_label(weir_kind_t kind) {
  switch (kind) {
  case WEIR_KIND_LB:
    return "lb";
  case WEIR_KIND_DISCOVERY:
    return "discovery";
  case WEIR_KIND_HEALTH:
    return "health";
  case WEIR_KIND_FILTER:
    return "filter";
  case WEIR_KIND_CERTS:
    return "certs";
  default:
    return "unknown";
  }
}

std::vector<std::string> plugin_search_path(const std::vector<std::string>& configured,
                                            const char* env_plugin_path) {
  std::vector<std::string> dirs = configured;
  if (env_plugin_path != nullptr) {
    std::string_view rest(env_plugin_path);
    while (!rest.empty()) {
      auto colon = rest.find(':');
      auto part = rest.substr(0, colon);
      if (!part.empty())
        dirs.emplace_back(part);
      if (colon == std::string_view::npos)
        break;
      rest.remove_prefix(colon + 1);
    }
  }
  dirs.push_back(
      (fs::path(executable_dir()) / ".." / WEIR_PLUGIN_SUBDIR).lexically_normal().string());
  return dirs;
}

Registry::Registry() = default;
Registry::~Registry() = default;

void Registry::load_dirs(const std::vector<std::string>& dirs, std::vector<std::string>& errors) {
  for (const auto& dir : dirs) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
      continue;
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (entry.path().extension() == ".so")
        files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& file : files) {
      auto fname = file.filename().string();
      if (loaded_files_.count(fname))
        continue; // shadowed by an earlier directory
      load_file(file.string(), errors);
    }
  }
}

bool Registry::load_file(const std::string& path, std::vector<std::string>& errors) {
  std::string stem = fs::path(path).stem().string();
  auto refuse = [&](std::string_view name, const std::string& reason) {
    errors.push_back(fmt::format("plugin \"{}\" ({}): {}", name, path, reason));
    return false;
  };

  // Check the file before dlopen: Boost.DLL reports a missing file as "Bad file descriptor".
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return refuse(stem, std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    return refuse(stem, "not a regular file");
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    return refuse(stem,
                  fmt::format("refused: the file is writable by group or others (mode {:04o})",
                              st.st_mode & 07777));
  if (::access(path.c_str(), R_OK) != 0)
    return refuse(stem, std::strerror(errno));

  auto lib = std::make_shared<Library>();
  lib->path = path;
  std::error_code bec;
  ::dlerror();
  lib->lib.load(boost::dll::fs::path(path), bec,
                boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  if (bec || !lib->lib.is_loaded()) {
    const char* why = ::dlerror();
    return refuse(stem, fmt::format("cannot load: {}", why ? why : bec.message()));
  }
  if (!lib->lib.has(WEIR_PLUGIN_ENTRY_SYMBOL)) {
    return refuse(stem, fmt::format("no entry point \"{}\" exported: not a weir plugin",
                                    WEIR_PLUGIN_ENTRY_SYMBOL));
  }
  auto entry = lib->lib.get<const weir_plugin_descriptor_t*()>(WEIR_PLUGIN_ENTRY_SYMBOL);
  const weir_plugin_descriptor_t* desc = entry();
  if (desc == nullptr)
    return refuse(stem, "the entry point returned no descriptor");
  if (!covers(desc->struct_size, offsetof(weir_plugin_descriptor_t, module_count),
              sizeof(desc->module_count)))
    return refuse(stem, fmt::format("descriptor too small ({} bytes)", desc->struct_size));
  std::string name = desc->name != nullptr ? desc->name : stem;
  if (desc->abi_major != WEIR_ABI_MAJOR)
    return refuse(name,
                  fmt::format("built for ABI {}.{}; this weir speaks ABI {}.{} and needs "
                              "the same major version",
                              desc->abi_major, desc->abi_minor, WEIR_ABI_MAJOR, WEIR_ABI_MINOR));
  if (desc->abi_minor > WEIR_ABI_MINOR)
    return refuse(name,
                  fmt::format("built for ABI {}.{}, newer than this weir's ABI {}.{}: "
                              "upgrade weir or rebuild the plugin against this SDK",
                              desc->abi_major, desc->abi_minor, WEIR_ABI_MAJOR, WEIR_ABI_MINOR));
  if (desc->module_count > 0 && desc->modules == nullptr)
    return refuse(name, "descriptor lists modules but has no module array");

  std::vector<Module> found;
  for (size_t i = 0; i < desc->module_count; ++i) {
    const weir_module_t& m = desc->modules[i];
    if (!covers(m.struct_size, offsetof(weir_module_t, vtable), sizeof(m.vtable)))
      return refuse(name, fmt::format("module #{}: struct too small", i));
    if (kind_label(m.kind) == "unknown")
      return refuse(name, fmt::format("module #{}: unknown kind {}", i, m.kind));
    if (!valid_module_name(m.name))
      return refuse(name, fmt::format("module #{}: invalid name (want [a-z0-9-]+)", i));
    if (m.vtable == nullptr)
      return refuse(name, fmt::format("module {} \"{}\": no vtable", kind_label(m.kind), m.name));
    auto missing = missing_hook(m.kind, m.vtable);
    if (!missing.empty())
      return refuse(name, fmt::format("module {} \"{}\": required hook \"{}\" is missing",
                                      kind_label(m.kind), m.name, missing));
    auto key = std::make_pair(m.kind, std::string(m.name));
    if (auto it = modules_.find(key); it != modules_.end())
      return refuse(name, fmt::format("module {} \"{}\" is already provided by plugin \"{}\" ({})",
                                      kind_label(m.kind), m.name, it->second.plugin_name,
                                      it->second.path));
    for (const auto& f : found)
      if (f.kind == m.kind && f.name == m.name)
        return refuse(
            name, fmt::format("module {} \"{}\" is declared twice", kind_label(m.kind), m.name));
    Module mod;
    mod.kind = m.kind;
    mod.name = m.name;
    mod.vtable = m.vtable;
    mod.plugin_name = name;
    mod.path = path;
    mod.abi_minor = desc->abi_minor;
    mod.library = lib;
    found.push_back(std::move(mod));
  }
  lib->name = name;
  for (auto& mod : found) {
    auto key = std::make_pair(mod.kind, mod.name);
    modules_.emplace(std::move(key), std::move(mod));
  }
  loaded_files_[fs::path(path).filename().string()] = path;
  ++libraries_;
  return true;
}

const Module* Registry::find(weir_kind_t kind, std::string_view name) const {
  auto it = modules_.find(std::make_pair(kind, std::string(name)));
  return it == modules_.end() ? nullptr : &it->second;
}

std::vector<std::string> Registry::names(weir_kind_t kind) const {
  std::vector<std::string> out;
  for (const auto& [key, mod] : modules_)
    if (key.first == kind)
      out.push_back(key.second);
  return out;
}

} // namespace weir::core::plugin
