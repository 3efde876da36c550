#include "weir/config/regex.hpp"

#include <boost/regex.hpp>

namespace weir::config {

namespace {
constexpr auto kSyntax = boost::regex::perl;
}

std::string check_regex(const std::string& pattern) {
  try {
    boost::regex re(pattern, kSyntax);
    (void)re;
    return "";
  } catch (const boost::regex_error& e) {
    return e.what();
  }
}

struct Regex::Impl {
  boost::regex re;
};

Regex::Regex(const std::string& pattern) : impl_(std::make_unique<Impl>()) {
  try {
    impl_->re.assign(pattern, kSyntax);
  } catch (const boost::regex_error&) {
    impl_.reset(); // never matches; check_regex refused it already
  }
}

Regex::~Regex() = default;

bool Regex::search(std::string_view text) const {
  if (!impl_)
    return false;
  try {
    return boost::regex_search(text.begin(), text.end(), impl_->re);
  } catch (const std::exception&) {
    return false; // too complex for this input
  }
}

} // namespace weir::config
