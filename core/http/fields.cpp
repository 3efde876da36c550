#include "core/http/fields.hpp"

#include "core/http/copy_bytes.hpp"

#include <boost/beast/core/detail/temporary_buffer.hpp>
#include <boost/beast/http/fields.hpp> // Beast's token-list helpers (detail::keep_alive_impl)
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/http/status.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <new>

namespace weir::core::http {

namespace bhttp = boost::beast::http;

struct Fields::Block {
  Block* next;
  std::size_t size; // bytes after the header
};

namespace {
// A first block holds the names and values of a usual head (curl: 50 bytes, a browser: 300 to
// 1,200); a head that needs more gets 2 KiB blocks, or one of its own size for a larger value
// (for a whole head held at once, with kHoldSlack bytes to spare).
constexpr std::size_t kFirstBlock = 512;
constexpr std::size_t kLaterBlock = 2048;
// Spare room in a block made for a held head (Fields::hold): the X-Forwarded-* fields and a Host
// the proxy adds fit without another block.
constexpr std::size_t kHoldSlack = 256;
} // namespace

Fields::Fields(const Fields& other) {
  *this = other;
}

Fields::Fields(Fields&& other) noexcept
    : entries_(std::move(other.entries_)), blocks_(other.blocks_), free_(other.free_),
      left_(other.left_), method_(other.method_), target_(other.target_), reason_(other.reason_) {
  other.entries_.clear();
  other.blocks_ = nullptr;
  other.free_ = nullptr;
  other.left_ = 0;
  other.method_ = other.target_ = other.reason_ = {};
}

Fields& Fields::operator=(const Fields& other) {
  if (this == &other)
    return *this;
  clear();
  entries_.reserve(other.entries_.size());
  for (const auto& f : other)
    insert(f.id_, f.name_string(), f.value());
  method_ = copy(other.method_);
  target_ = copy(other.target_);
  reason_ = copy(other.reason_);
  return *this;
}

Fields& Fields::operator=(Fields&& other) noexcept {
  if (this == &other)
    return *this;
  release();
  entries_ = std::move(other.entries_);
  other.entries_.clear();
  blocks_ = std::exchange(other.blocks_, nullptr);
  free_ = std::exchange(other.free_, nullptr);
  left_ = std::exchange(other.left_, 0);
  method_ = std::exchange(other.method_, {});
  target_ = std::exchange(other.target_, {});
  reason_ = std::exchange(other.reason_, {});
  return *this;
}

Fields::~Fields() {
  release();
}

void Fields::release() noexcept {
  SmallAllocator<char> alloc;
  for (Block* b = blocks_; b != nullptr;) {
    Block* next = b->next;
    alloc.deallocate(reinterpret_cast<char*>(b), sizeof(Block) + b->size);
    b = next;
  }
  blocks_ = nullptr;
  free_ = nullptr;
  left_ = 0;
}

void Fields::clear() noexcept {
  entries_.clear();
  method_ = target_ = reason_ = {};
  if (blocks_ == nullptr)
    return;
  // Keep the oldest block (the first, usual size) for what comes next.
  SmallAllocator<char> alloc;
  while (blocks_->next != nullptr) {
    Block* b = blocks_;
    blocks_ = b->next;
    alloc.deallocate(reinterpret_cast<char*>(b), sizeof(Block) + b->size);
  }
  free_ = reinterpret_cast<char*>(blocks_ + 1);
  left_ = blocks_->size;
}

char* Fields::room(std::size_t n, std::size_t slack) {
  if (n > left_) {
    std::size_t size = blocks_ == nullptr ? kFirstBlock : kLaterBlock;
    size = std::max(size - sizeof(Block), n + slack);
    SmallAllocator<char> alloc;
    auto* b = reinterpret_cast<Block*>(alloc.allocate(sizeof(Block) + size));
    b->next = blocks_;
    b->size = size;
    blocks_ = b;
    free_ = reinterpret_cast<char*>(b + 1);
    left_ = size;
  }
  char* p = free_;
  free_ += n;
  left_ -= n;
  return p;
}

Fields::string_view Fields::hold(string_view text) {
  return copy(text, kHoldSlack);
}

Fields::string_view Fields::copy(string_view s, std::size_t slack) {
  if (s.empty())
    return {};
  char* p = room(s.size(), slack);
  std::memcpy(p, s.data(), s.size());
  return {p, s.size()};
}

Fields::const_iterator Fields::find(field id, string_view name) const noexcept {
  for (const auto& f : *this)
    if (matches(f, id, name))
      return &f;
  return end();
}

Fields::const_iterator Fields::find(field name) const noexcept {
  for (const auto& f : *this)
    if (f.id_ == name)
      return &f;
  return end();
}

Fields::const_iterator Fields::find(string_view name) const noexcept {
  return find(field_code(name), name);
}

std::size_t Fields::count(field name) const noexcept {
  return static_cast<std::size_t>(
      std::count_if(begin(), end(), [&](const value_type& f) { return f.id_ == name; }));
}

std::size_t Fields::count(string_view name) const noexcept {
  field id = field_code(name);
  return static_cast<std::size_t>(
      std::count_if(begin(), end(), [&](const value_type& f) { return matches(f, id, name); }));
}

Fields::string_view Fields::operator[](field name) const noexcept {
  auto it = find(name);
  return it == end() ? string_view() : it->value();
}

Fields::string_view Fields::operator[](string_view name) const noexcept {
  auto it = find(name);
  return it == end() ? string_view() : it->value();
}

void Fields::reserve_one() {
  if (entries_.size() == entries_.capacity())
    entries_.reserve(std::max<std::size_t>(entries_.size() * 2, 16));
}

char* Fields::stage(string_view name, string_view value) {
  reserve_one();
  // Name and value in one piece of a block.
  char* p = room(name.size() + value.size());
  copy_bytes(p, name.data(), name.size());
  copy_bytes(p + name.size(), value.data(), value.size());
  return p;
}

void Fields::push(field id, const char* name, std::size_t name_len, const char* value,
                  std::size_t value_len) noexcept {
  value_type& f = entries_.emplace_back(); // (no allocation: reserve_one() made room)
  f.name_ = name;
  f.name_len_ = static_cast<std::uint32_t>(name_len);
  f.value_ = value;
  f.value_len_ = static_cast<std::uint32_t>(value_len);
  f.id_ = id;
}

void Fields::adopt(field id, string_view name, string_view value) {
  reserve_one();
  push(id, name.data(), name.size(), value.data(), value.size());
}

void Fields::insert(field id, string_view name, string_view value) {
  char* p = stage(name, value);
  push(id, p, name.size(), p + name.size(), value.size());
}

void Fields::insert(field name, string_view value) {
  insert(name, bhttp::to_string(name), value);
}

void Fields::insert(string_view name, string_view value) {
  insert(field_code(name), name, value);
}

// Room for the new field is made before the old ones go: a failed allocation leaves the fields
// as they were.
void Fields::set(field name, string_view value) {
  set(name, bhttp::to_string(name), value);
}

void Fields::set(string_view name, string_view value) {
  set(field_code(name), name, value);
}

void Fields::set(field id, string_view name, string_view value) {
  char* p = stage(name, value);
  erase(id, name);
  push(id, p, name.size(), p + name.size(), value.size());
}

Fields::const_iterator Fields::erase(const_iterator pos) {
  auto index = pos - begin();
  entries_.erase(entries_.begin() + index);
  return begin() + index;
}

std::size_t Fields::erase(field id, string_view name) {
  auto last = std::remove_if(entries_.begin(), entries_.end(),
                             [&](const value_type& f) { return matches(f, id, name); });
  auto n = static_cast<std::size_t>(entries_.end() - last);
  entries_.erase(last, entries_.end());
  return n;
}

std::size_t Fields::erase(field name) {
  return erase(name, bhttp::to_string(name));
}

std::size_t Fields::erase(string_view name) {
  return erase(field_code(name), name);
}

// --- Beast's Fields requirements: the same rules as basic_fields' ---------------------------

bool Fields::get_chunked_impl() const {
  // Chunked when it is the last transfer coding.
  auto const te = bhttp::token_list{(*this)[field::transfer_encoding]};
  for (auto it = te.begin(); it != te.end();) {
    auto const next = std::next(it);
    if (next == te.end())
      return boost::beast::iequals(*it, "chunked");
    it = next;
  }
  return false;
}

bool Fields::get_keep_alive_impl(unsigned version) const {
  auto it = find(field::connection);
  if (version < 11)
    return it != end() && bhttp::token_list{it->value()}.exists("keep-alive");
  return it == end() || !bhttp::token_list{it->value()}.exists("close");
}

void Fields::set_chunked_impl(bool value) {
  auto it = find(field::transfer_encoding);
  if (value) {
    if (it == end()) {
      set(field::transfer_encoding, "chunked");
      return;
    }
    if (get_chunked_impl())
      return; // already the last coding
    std::string both(it->value());
    both += ", chunked";
    set(field::transfer_encoding, both);
    return;
  }
  if (it == end())
    return;
  boost::beast::detail::temporary_buffer buf;
  bhttp::detail::filter_token_list_last(buf, it->value(), {"chunked", {}});
  if (!buf.empty())
    set(field::transfer_encoding, buf.view());
  else
    erase(field::transfer_encoding);
}

void Fields::set_content_length_impl(const boost::optional<std::uint64_t>& value) {
  if (!value) {
    erase(field::content_length);
    return;
  }
  char digits[24];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, *value);
  (void)ec;
  set(field::content_length, string_view(digits, static_cast<std::size_t>(end - digits)));
}

void Fields::set_keep_alive_impl(unsigned version, bool keep_alive) {
  boost::beast::detail::temporary_buffer buf;
  bhttp::detail::keep_alive_impl(buf, (*this)[field::connection], version, keep_alive);
  if (buf.empty())
    erase(field::connection);
  else
    set(field::connection, buf.view());
}

// --- writer -------------------------------------------------------------------------------------

namespace {
void append_version(std::string& out, unsigned version) {
  out += "HTTP/";
  out += static_cast<char>('0' + version / 10);
  out += '.';
  out += static_cast<char>('0' + version % 10);
}
} // namespace

void Fields::writer::fields(const Fields& f) {
  for (const auto& field : f) {
    head_.append(field.name_string().data(), field.name_string().size());
    head_ += ": ";
    head_.append(field.value().data(), field.value().size());
    head_ += "\r\n";
  }
  head_ += "\r\n";
}

Fields::writer::writer(const Fields& f, unsigned version, bhttp::verb method) {
  string_view m = method == bhttp::verb::unknown ? f.get_method_impl() : bhttp::to_string(method);
  head_.append(m.data(), m.size());
  head_ += ' ';
  head_.append(f.target_.data(), f.target_.size());
  head_ += ' ';
  append_version(head_, version);
  head_ += "\r\n";
  fields(f);
}

Fields::writer::writer(const Fields& f, unsigned version, unsigned code) {
  append_version(head_, version);
  head_ += ' ';
  head_ += static_cast<char>('0' + code / 100 % 10);
  head_ += static_cast<char>('0' + code / 10 % 10);
  head_ += static_cast<char>('0' + code % 10);
  head_ += ' ';
  string_view reason =
      f.reason_.empty() ? bhttp::obsolete_reason(static_cast<bhttp::status>(code)) : f.reason_;
  head_.append(reason.data(), reason.size());
  head_ += "\r\n";
  fields(f);
}

Fields::writer::writer(const Fields& f) {
  fields(f);
}

} // namespace weir::core::http
