#include "core/http/field_code.hpp"

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace weir::core::http {

namespace {

using field = boost::beast::http::field;

// The words are built with byte i at bits 8i, as a little-endian load reads them.
static_assert(std::endian::native == std::endian::little, "field_code's words are little-endian");

// A name of 2 to 24 bytes is compared as two or three words: the first `k` bytes, the last `k`
// (k = 2, 4 or 8 after the length; they may overlap) and, above 16 bytes, bytes 8 to 15.
constexpr std::size_t kMaxLen = 24;

constexpr std::size_t word_size(std::size_t n) {
  return n >= 8 ? 8 : n >= 4 ? 4 : 2;
}

struct Key {
  std::uint64_t word[3] = {};
  std::uint64_t fold[3] = {}; // 0x20 in the bytes that are letters: ORed into the name's bytes
  field id = field::unknown;
};

// `lower`: the name in lower case.
constexpr Key make_key(std::string_view lower, field id) {
  Key k;
  k.id = id;
  std::size_t n = lower.size();
  std::size_t w = word_size(n);
  const std::size_t at[3] = {0, n - w, 8};
  for (int part = 0; part < (n > 16 ? 3 : 2); ++part)
    for (std::size_t i = 0; i < w; ++i) {
      auto c = static_cast<unsigned char>(lower[at[part] + i]);
      k.word[part] |= std::uint64_t{c} << (8 * i);
      if (c >= 'a' && c <= 'z')
        k.fold[part] |= std::uint64_t{0x20} << (8 * i);
    }
  return k;
}

struct Name {
  std::string_view lower;
  field id;
};

// The fast names. Those Beast does not know are here too, as field::unknown (its answer).
constexpr Name kNames[] = {
    {"te", field::te},
    {"age", field::age},
    {"via", field::via},
    {"host", field::host},
    {"date", field::date},
    {"etag", field::etag},
    {"vary", field::vary},
    {"range", field::range},
    {"accept", field::accept},
    {"cookie", field::cookie},
    {"expect", field::expect},
    {"server", field::server},
    {"origin", field::origin},
    {"pragma", field::pragma},
    {"referer", field::referer},
    {"upgrade", field::upgrade},
    {"trailer", field::trailer},
    {"expires", field::expires},
    {"location", field::location},
    {"forwarded", field::forwarded},
    {"x-real-ip", field::unknown},
    {"connection", field::connection},
    {"keep-alive", field::keep_alive},
    {"user-agent", field::user_agent},
    {"set-cookie", field::set_cookie},
    {"x-request-id", field::unknown},
    {"content-type", field::content_type},
    {"cache-control", field::cache_control},
    {"last-modified", field::last_modified},
    {"authorization", field::authorization},
    {"accept-ranges", field::accept_ranges},
    {"if-none-match", field::if_none_match},
    {"content-range", field::content_range},
    {"content-length", field::content_length},
    {"accept-encoding", field::accept_encoding},
    {"accept-language", field::accept_language},
    {"x-forwarded-for", field::unknown},
    {"content-encoding", field::content_encoding},
    {"proxy-connection", field::proxy_connection},
    {"x-forwarded-host", field::unknown},
    {"x-forwarded-proto", field::unknown},
    {"transfer-encoding", field::transfer_encoding},
    {"if-modified-since", field::if_modified_since},
};

constexpr std::size_t kPerLength = 6;

struct Bucket {
  std::size_t count = 0;
  Key keys[kPerLength];
};

constexpr auto kBuckets = [] {
  std::array<Bucket, kMaxLen + 1> b{};
  for (const auto& n : kNames) {
    auto& bucket = b[n.lower.size()];
    bucket.keys[bucket.count++] = make_key(n.lower, n.id); // (a 7th name: not a constant)
  }
  return b;
}();

template <std::size_t W> inline std::uint64_t load(const char* p) noexcept {
  if constexpr (W == 8) {
    std::uint64_t x;
    std::memcpy(&x, p, 8);
    return x;
  } else if constexpr (W == 4) {
    std::uint32_t x;
    std::memcpy(&x, p, 4);
    return x;
  } else {
    std::uint16_t x;
    std::memcpy(&x, p, 2);
    return x;
  }
}

template <std::size_t W> const Key* lookup(const char* p, std::size_t n, const Bucket& b) noexcept {
  std::uint64_t first = load<W>(p);
  std::uint64_t last = load<W>(p + n - W);
  std::uint64_t middle = n > 16 ? load<8>(p + 8) : 0;
  for (std::size_t i = 0; i < b.count; ++i) {
    const Key& k = b.keys[i];
    if ((first | k.fold[0]) == k.word[0] && (last | k.fold[1]) == k.word[1] &&
        (n <= 16 || (middle | k.fold[2]) == k.word[2]))
      return &k;
  }
  return nullptr;
}

} // namespace

// ORing 0x20 into a byte matches only the byte itself and its upper-case letter when the wanted
// byte is a lower-case letter; every other wanted byte is compared as it is.
field field_code(std::string_view name) noexcept {
  std::size_t n = name.size();
  if (n >= 2 && n <= kMaxLen && kBuckets[n].count != 0) {
    const Bucket& b = kBuckets[n];
    const char* p = name.data();
    const Key* k = n >= 8 ? lookup<8>(p, n, b) : n >= 4 ? lookup<4>(p, n, b) : lookup<2>(p, n, b);
    if (k != nullptr)
      return k->id;
  }
  return boost::beast::http::string_to_field(name);
}

std::string_view lower_field_name(field id) noexcept {
  // Built once, from Beast's own names (the first call allocates; none after).
  static const auto table = [] {
    constexpr auto count = static_cast<std::size_t>(field::xref) + 1; // xref: Beast's last
    std::vector<std::string> t(count);
    for (std::size_t i = 1; i < count; ++i) {
      auto name = boost::beast::http::to_string(static_cast<field>(i));
      t[i].reserve(name.size());
      for (char c : name)
        t[i] += c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    }
    return t;
  }();
  auto i = static_cast<std::size_t>(id);
  return i < table.size() ? std::string_view(table[i]) : std::string_view();
}

} // namespace weir::core::http
