// The header field container of every message on the request path (requests and responses, both
// HTTP/1.x and HTTP/2, the fields plugins read and edit).
//
// It meets Beast's Fields requirements, so `beast::http::header<isRequest, Fields>` and Beast's
// serializer work on it, with the member functions of Beast's `basic_fields` that weir uses
// (find, count, operator[], insert, set, erase, iteration), but it is flat: the fields sit in one
// array in the order they were added (a head's wire order), and their names and values are copied
// into a few large blocks that never move. Beast's container spends, per field, a tree insertion
// with case-insensitive comparisons and a block of its own; a head has 5 to 20 fields, which a
// linear search by field code goes through faster than a tree walk. The blocks and the array come
// from the worker's size-class lists (runtime/small_alloc.hpp): no malloc per message.
//
// Differences from basic_fields that callers may notice:
// - insert() appends at the end (basic_fields puts a field after the last one of the same name);
//   fields of one name keep their order either way. Fields of one name need not be adjacent, so
//   there is no equal_range(): use each_value() or walk the fields;
// - an iterator is invalidated by any insert, set or erase (erase returns the next one);
// - a value stays readable (its string_view valid) until the container is cleared or destroyed,
//   even after set() replaced or erase() removed its field.
#pragma once

#include "core/http/field_code.hpp"
#include "core/runtime/small_alloc.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/optional/optional.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace weir::core::http {

class Fields {
public:
  using string_view = boost::beast::string_view;
  using field = boost::beast::http::field;

  // One field: its code (field::unknown for names Beast does not know), name and value.
  class value_type {
  public:
    field name() const noexcept { return id_; }
    string_view name_string() const noexcept { return {name_, name_len_}; }
    string_view value() const noexcept { return {value_, value_len_}; }

  private:
    friend class Fields;
    const char* name_ = nullptr;
    const char* value_ = nullptr;
    std::uint32_t name_len_ = 0;
    std::uint32_t value_len_ = 0;
    field id_ = field::unknown;
  };
  using const_iterator = const value_type*;
  using iterator = const_iterator;

  Fields() noexcept = default;
  Fields(const Fields& other);
  Fields(Fields&& other) noexcept;
  Fields& operator=(const Fields& other);
  Fields& operator=(Fields&& other) noexcept;
  ~Fields();

  const_iterator begin() const noexcept { return entries_.data(); }
  const_iterator end() const noexcept { return entries_.data() + entries_.size(); }
  const_iterator cbegin() const noexcept { return begin(); }
  const_iterator cend() const noexcept { return end(); }
  bool empty() const noexcept { return entries_.empty(); }
  std::size_t size() const noexcept { return entries_.size(); }

  // The first field of that name, or end().
  const_iterator find(field name) const noexcept;
  const_iterator find(string_view name) const noexcept;
  std::size_t count(field name) const noexcept;
  std::size_t count(string_view name) const noexcept;
  // The first value of that name, or "" when there is none.
  string_view operator[](field name) const noexcept;
  string_view operator[](string_view name) const noexcept;

  // Calls fn(value) for each field of that name in order, until fn returns true. Returns
  // whether one did.
  template <class Fn> bool each_value(field name, Fn&& fn) const {
    for (const auto& f : *this)
      if (f.id_ == name && fn(f.value()))
        return true;
    return false;
  }
  template <class Fn> bool each_value(string_view name, Fn&& fn) const {
    field id = field_code(name);
    for (const auto& f : *this)
      if (matches(f, id, name) && fn(f.value()))
        return true;
    return false;
  }

  // The same, for a caller that knows the name's code (field::unknown for a name Beast does not
  // know, like X-Forwarded-For): no lookup of the name.
  template <class Fn> bool each_value(field id, string_view name, Fn&& fn) const {
    for (const auto& f : *this)
      if (matches(f, id, name) && fn(f.value()))
        return true;
    return false;
  }

  // Adds a field at the end.
  void insert(field name, string_view value);
  void insert(string_view name, string_view value);
  // The name as given (its spelling kept), `id` its code (field::unknown for an unknown name).
  void insert(field id, string_view name, string_view value);
  // A whole head's fields added with one copy instead of one per field: hold() copies `text` (a
  // head, or the part of it that holds the fields) into the blocks and returns the copy;
  // adopt() adds a field whose name and value are views that outlive the container: inside a
  // copy hold() returned (stable until clear()), static text, or text the caller keeps alive
  // longer (a connection's peer address for a request's X-Forwarded-For). adopt_target() and
  // adopt_reason() set the request target or the reason phrase to such a view.
  // (An empty text gives an empty view.) A head larger than the first block gets a block of its
  // own with room to spare, so that the fields a proxy adds next (X-Forwarded-*) fit in it too.
  string_view hold(string_view text);
  void adopt(field id, string_view name, string_view value);
  void adopt_target(string_view target) noexcept { target_ = target; }
  void adopt_reason(string_view reason) noexcept { reason_ = reason; }

  // Replaces every field of that name with one (at the end).
  void set(field name, string_view value);
  void set(string_view name, string_view value);
  // `id` the code of `name` (as for each_value above).
  void set(field id, string_view name, string_view value);
  // Removes one field; returns the one after it.
  const_iterator erase(const_iterator pos);
  // Removes every field of that name; returns how many.
  std::size_t erase(field name);
  std::size_t erase(string_view name);
  // No fields, no method, target or reason; the blocks but the first go back.
  void clear() noexcept;

  class writer; // for Beast's serializer: the whole head in one buffer

protected:
  // Beast's Fields requirements (called by beast::http::header).
  string_view get_method_impl() const noexcept { return method_; }
  string_view get_target_impl() const noexcept { return target_; }
  string_view get_reason_impl() const noexcept { return reason_; }
  bool get_chunked_impl() const;
  bool get_keep_alive_impl(unsigned version) const;
  bool has_content_length_impl() const noexcept { return find(field::content_length) != end(); }
  void set_method_impl(string_view s) { method_ = copy(s); }
  void set_target_impl(string_view s) { target_ = copy(s); }
  void set_reason_impl(string_view s) { reason_ = copy(s); }
  void set_chunked_impl(bool value);
  void set_content_length_impl(const boost::optional<std::uint64_t>& value);
  void set_keep_alive_impl(unsigned version, bool keep_alive);

private:
  struct Block; // a block of copied names and values (fields.cpp)

  static bool matches(const value_type& f, field id, string_view name) noexcept {
    if (id != field::unknown)
      return f.id_ == id;
    return f.id_ == field::unknown && boost::beast::iequals(f.name_string(), name);
  }
  const_iterator find(field id, string_view name) const noexcept;
  // A field is added in two steps: stage() copies its name and value (and reserve_one() makes
  // room in the array), which may throw; push() appends it, which does not.
  void reserve_one();
  char* stage(string_view name, string_view value);
  void push(field id, const char* name, std::size_t name_len, const char* value,
            std::size_t value_len) noexcept;
  std::size_t erase(field id, string_view name);
  // `s` copied into the blocks (stable until clear()).
  string_view copy(string_view s, std::size_t slack = 0);
  // Room for n bytes; a new block, when one is needed, has `slack` bytes more than n at least.
  char* room(std::size_t n, std::size_t slack = 0);
  void release() noexcept;

  std::vector<value_type, SmallAllocator<value_type>> entries_;
  Block* blocks_ = nullptr; // newest first
  char* free_ = nullptr;    // the unused end of blocks_
  std::size_t left_ = 0;
  string_view method_;
  string_view target_;
  string_view reason_;
};

class Fields::writer {
public:
  using const_buffers_type = boost::asio::const_buffer;
  // A request's head: "<method> <target> HTTP/x.y", the fields, the empty line.
  writer(const Fields& f, unsigned version, boost::beast::http::verb method);
  // A response's head: "HTTP/x.y <code> <reason>", the fields, the empty line.
  writer(const Fields& f, unsigned version, unsigned code);
  // Only the fields and the empty line (trailers).
  explicit writer(const Fields& f);
  const_buffers_type get() const { return {head_.data(), head_.size()}; }

private:
  void fields(const Fields& f);
  std::string head_;
};

} // namespace weir::core::http
