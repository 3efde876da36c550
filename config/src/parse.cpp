// The only translation unit that includes toml++: converts a TOML document to a Node tree with
// source positions and key paths. Validation happens on the Node tree (load.cpp).
#include "internal.hpp"

#include <algorithm>
#include <exception>
#include <tuple>

#include <toml++/toml.h>

namespace weir::config::detail {

namespace {

class Converter {
public:
  Converter(const std::string& file, ParsedDocument& doc) : file_(file), doc_(doc) {}

  Node convert(const toml::node& in, const std::string& path) {
    Node out;
    out.loc = loc_of(in.source());
    out.path = path;
    switch (in.type()) {
    case toml::node_type::string:
      out.type = Node::Type::String;
      out.string = in.as_string()->get();
      break;
    case toml::node_type::integer:
      out.type = Node::Type::Integer;
      out.integer = in.as_integer()->get();
      break;
    case toml::node_type::floating_point:
      out.type = Node::Type::Float;
      out.floating = in.as_floating_point()->get();
      break;
    case toml::node_type::boolean:
      out.type = Node::Type::Boolean;
      out.boolean = in.as_boolean()->get();
      break;
    case toml::node_type::array: {
      out.type = Node::Type::Array;
      const toml::array& arr = *in.as_array();
      out.array.reserve(arr.size());
      for (size_t i = 0; i < arr.size(); ++i)
        out.array.push_back(convert(arr[i], path_index(path, i)));
      break;
    }
    case toml::node_type::table: {
      out.type = Node::Type::Table;
      const toml::table& tbl = *in.as_table();
      // toml++ keeps keys sorted; restore file order from the keys' positions.
      std::vector<std::pair<const toml::key*, const toml::node*>> entries;
      entries.reserve(tbl.size());
      for (auto&& [key, value] : tbl)
        entries.emplace_back(&key, &value);
      std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
        const auto& ra = a.first->source().begin;
        const auto& rb = b.first->source().begin;
        return std::tie(ra.line, ra.column) < std::tie(rb.line, rb.column);
      });
      out.table.reserve(entries.size());
      for (const auto& [key, value] : entries) {
        std::string child_path = path_join(path, key->str());
        doc_.key_locs[child_path] = loc_of(key->source());
        out.table.emplace_back(std::string(key->str()), convert(*value, child_path));
      }
      break;
    }
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time:
      doc_.errors.push_back({out.loc, path,
                             "dates and times are not supported here; quote the value to make "
                             "it a string"});
      break;
    case toml::node_type::none:
      break;
    }
    return out;
  }

private:
  SourceLoc loc_of(const toml::source_region& region) const {
    return SourceLoc{file_, region.begin.line, region.begin.column};
  }

  const std::string& file_;
  ParsedDocument& doc_;
};

} // namespace

ParsedDocument parse_toml(std::string_view text, const std::string& source_name) {
  ParsedDocument doc;
  doc.root.type = Node::Type::Table;
  doc.root.loc = SourceLoc{source_name, 1, 1};
  try {
    toml::table table = toml::parse(text, std::string_view(source_name));
    Converter converter(source_name, doc);
    Node root = converter.convert(table, "");
    root.loc = SourceLoc{source_name, 1, 1};
    doc.root = std::move(root);
    doc.syntax_ok = true;
  } catch (const toml::parse_error& e) {
    const auto& begin = e.source().begin;
    doc.errors.push_back({SourceLoc{source_name, begin.line, begin.column}, "",
                          "TOML syntax error: " + std::string(e.description())});
  } catch (const std::exception& e) {
    doc.errors.push_back(
        {SourceLoc{source_name, 0, 0}, "", std::string("cannot parse: ") + e.what()});
  }
  return doc;
}

} // namespace weir::config::detail
