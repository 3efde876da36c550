// TlsCore: the SSL object and its BIO (see tls_stream.hpp).
#include "core/net/tls_stream.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>

#include <openssl/bio.h>
#include <openssl/err.h>

#include <limits>
#include <new>
#include <stdexcept>

namespace weir::core::net {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

// SSL_get_error needs an empty error queue before each call. ERR_clear_error empties all 16 slots
// of it unconditionally (two frees each: about 1,900 instructions); the queue is nearly always
// empty already, which ERR_peek_error sees for a few dozen.
inline void clear_errors() {
  if (ERR_peek_error() != 0)
    ERR_clear_error();
}

TlsCore* core_of(BIO* b) {
  return static_cast<TlsCore*>(BIO_get_data(b));
}

int bio_write_cb(BIO* b, const char* data, int len) {
  BIO_clear_retry_flags(b);
  return core_of(b)->bio_write(data, len);
}

int bio_read_cb(BIO* b, char* out, int len) {
  BIO_clear_retry_flags(b);
  int n = core_of(b)->bio_read(out, len);
  if (n < 0)
    BIO_set_retry_read(b);
  return n;
}

long bio_ctrl_cb(BIO* b, int cmd, long, void*) {
  switch (cmd) {
  case BIO_CTRL_FLUSH: // (the output is sent when the OpenSSL call returns)
    return 1;
  case BIO_CTRL_EOF:
    return core_of(b)->input_ended() ? 1 : 0;
  default:
    return 0;
  }
}

int bio_create_cb(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

int bio_destroy_cb(BIO*) {
  return 1;
}

// The BIO method, made once for the process.
BIO_METHOD* socket_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "weir TLS socket");
    if (m == nullptr || BIO_meth_set_write(m, bio_write_cb) != 1 ||
        BIO_meth_set_read(m, bio_read_cb) != 1 || BIO_meth_set_ctrl(m, bio_ctrl_cb) != 1 ||
        BIO_meth_set_create(m, bio_create_cb) != 1 || BIO_meth_set_destroy(m, bio_destroy_cb) != 1)
      throw std::runtime_error("cannot create the TLS socket BIO method");
    return m;
  }();
  return method;
}

} // namespace

// --- TlsQuietList -----------------------------------------------------------------------------

namespace {
thread_local TlsQuietList* this_thread_list = nullptr;
} // namespace

TlsQuietList::~TlsQuietList() {
  for (TlsCore* c : cores_) // (none should be left: they go first)
    c->quiet_ = nullptr;
  if (this_thread_list == this)
    this_thread_list = nullptr;
}

void TlsQuietList::install() noexcept {
  this_thread_list = this;
}

TlsQuietList* TlsQuietList::current() noexcept {
  return this_thread_list;
}

void TlsQuietList::add(TlsCore* c) {
  c->quiet_slot_ = cores_.size();
  cores_.push_back(c);
  c->quiet_ = this;
}

void TlsQuietList::remove(TlsCore* c) noexcept {
  std::size_t i = c->quiet_slot_;
  cores_[i] = cores_.back();
  cores_[i]->quiet_slot_ = i;
  cores_.pop_back();
  c->quiet_ = nullptr;
}

TlsQuietList::Swept TlsQuietList::sweep() noexcept {
  Swept out;
  for (TlsCore* c : cores_) {
    if (c->called_) {
      c->called_ = false; // busy since the last sweep: looked at again at the next
    } else if (!c->released_) {
      // Quiet since the last sweep. Whether OpenSSL lets go of its buffers changes only with a
      // call into it (which clears released_ again), so a refusal is not asked again either.
      ++(c->release_buffers() ? out.released : out.kept);
      c->released_ = true;
    }
  }
  return out;
}

// --- TlsCore -----------------------------------------------------------------------------------

TlsCore::TlsCore(SSL_CTX* ctx, BufferPool& pool) : pool_(pool) {
  BIO_METHOD* method = socket_method(); // (before SSL_new: it may throw)
  ssl_ = SSL_new(ctx);
  if (ssl_ == nullptr)
    throw std::bad_alloc();
  BIO* bio = BIO_new(method);
  if (bio == nullptr) {
    SSL_free(ssl_);
    throw std::bad_alloc();
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);
  // As Asio's engine: a write may end after some records (write_some), and a retried write may
  // come from another address (our writes are never retried: the BIO takes everything).
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Record buffers: given back by the thread's quiet list, or (a thread without one) after every
  // record.
  if (TlsQuietList* list = TlsQuietList::current()) {
    try {
      list->add(this);
    } catch (const std::bad_alloc&) {
      SSL_set_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
    }
  } else {
    SSL_set_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
  }
}

TlsCore::~TlsCore() {
  if (quiet_ != nullptr)
    quiet_->remove(this);
  SSL_free(ssl_); // (frees the BIO)
}

// --- the BIO -----------------------------------------------------------------------------------

bool TlsCore::must_receive() const noexcept {
  return in_pos_ == in_len_ && !in_eof_ && !send_error_ && (out_pos_ == out_len_ || flushing_) &&
         SSL_is_init_finished(ssl_) != 0 && SSL_has_pending(ssl_) == 0 &&
         (SSL_get_shutdown(ssl_) & SSL_RECEIVED_SHUTDOWN) == 0;
}

bool TlsCore::release_buffers() noexcept {
  // OpenSSL between records: its read state is "read header" ("RH"; "RB" once a header is in and
  // the body is awaited) and no byte of a record waits in its buffer. SSL_free_buffers refuses
  // by itself in the other cases too (and while output waits in its write buffer), but OpenSSL
  // builds before 3.0.14 missed a record whose header alone had come, and freed the buffer under
  // it (CVE-2024-4741). A handshake that stalls between records gives its buffers back too, as
  // SSL_MODE_RELEASE_BUFFERS would (its messages are kept elsewhere).
  if (SSL_has_pending(ssl_) != 0 || std::strcmp(SSL_rstate_string(ssl_), "RH") != 0)
    return false;
  return SSL_free_buffers(ssl_) == 1;
}

int TlsCore::bio_read(char* out, int len) {
  std::size_t avail = in_len_ - in_pos_;
  if (avail == 0)
    return in_eof_ ? 0 : -1;
  std::size_t n = std::min(avail, static_cast<std::size_t>(len));
  std::memcpy(out, in_.get() + in_pos_, n);
  in_pos_ += n;
  if (in_pos_ == in_len_)
    release_in();
  return static_cast<int>(n);
}

bool TlsCore::have_out_block() {
  if (out_)
    return true;
  try {
    out_ = pool_.block();
  } catch (const std::bad_alloc&) {
    send_error_ = asio::error::no_memory;
    return false;
  }
  out_pos_ = out_len_ = 0;
  return true;
}

int TlsCore::bio_write(const char* data, int len) {
  auto n = static_cast<std::size_t>(len);
  if (send_error_ || !have_out_block())
    return -1;
  if (BufferPool::kBlockSize - out_len_ < n && !flushing_) {
    // Full: send what is there (the socket may take it), then make room at the front (or in a
    // fresh block, when all of it went).
    send_out();
    if (send_error_ || !have_out_block())
      return -1;
    if (out_pos_ > 0)
      std::memmove(out_.get(), out_.get() + out_pos_, out_len_ - out_pos_);
    out_len_ -= out_pos_;
    out_pos_ = 0;
  }
  if (BufferPool::kBlockSize - out_len_ < n) {
    // More than a block waits for the peer (a write is at most kMaxWrite bytes of records, so
    // only a peer that takes nothing gets here): the connection fails.
    send_error_ = asio::error::no_buffer_space;
    return -1;
  }
  std::memcpy(out_.get() + out_len_, data, n);
  out_len_ += n;
  return len;
}

bool TlsCore::send_out() {
  if (out_len_ == out_pos_ || flushing_)
    return out_len_ == out_pos_;
  if (fd_ < 0) { // closed (a deadline passed): nothing more goes out
    send_error_ = asio::error::bad_descriptor;
    release_out();
    return true;
  }
  asio::const_buffer b(out_.get() + out_pos_, out_len_ - out_pos_);
  error_code ec;
  std::size_t sent = send_now(fd_, &b, 1, ec);
  if (ec) {
    send_error_ = ec;
    release_out();
    return true;
  }
  out_pos_ += sent;
  if (out_pos_ == out_len_) {
    release_out();
    return true;
  }
  return false;
}

void TlsCore::flushed(std::size_t n) noexcept {
  out_pos_ += n;
  if (out_pos_ >= out_len_)
    release_out();
}

void TlsCore::release_in() noexcept {
  in_.reset();
  in_pos_ = in_len_ = 0;
}

void TlsCore::release_out() noexcept {
  out_.reset();
  out_pos_ = out_len_ = 0;
}

error_code TlsCore::received(const error_code& ec, std::size_t n) {
  if (ec == asio::error::eof) {
    in_eof_ = true; // OpenSSL learns of it at its next read (and says how the stream ended)
    return {};
  }
  if (ec)
    return ec;
  in_pos_ = 0;
  in_len_ = n;
  return {};
}

// --- the steps ---------------------------------------------------------------------------------

error_code TlsCore::error_of(int ret) {
  int err = SSL_get_error(ssl_, ret);
  if (err == SSL_ERROR_ZERO_RETURN)
    return asio::error::eof;
  if (send_error_)
    return send_error_;
  if (err == SSL_ERROR_SSL) {
    unsigned long e = ERR_get_error();
    if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
      return asio::ssl::error::stream_truncated;
    if (e != 0)
      return error_code(static_cast<int>(e), asio::error::get_ssl_category());
  }
  if (in_eof_)
    return asio::ssl::error::stream_truncated;
  return asio::error::connection_reset;
}

// (A read never waits for its output: a write may be sending at the same time; what the socket
// did not take leaves with the next write.)
TlsCore::Step TlsCore::finish(int ret, std::size_t n, bool may_flush) {
  bool all_out = send_out();
  Step s;
  s.flush = may_flush && !all_out && !send_error_;
  if (ret == 1) {
    s.n = n;
    if (send_error_ && may_flush) // (a read's bytes are good: the next write learns of it)
      s.ec = send_error_;
    return s;
  }
  int err = SSL_get_error(ssl_, ret);
  if (err == SSL_ERROR_WANT_READ && !in_eof_ && !send_error_) {
    s.next = Next::read;
    return s;
  }
  s.flush = false;
  s.ec = error_of(ret);
  return s;
}

TlsCore::Step TlsCore::handshake(asio::ssl::stream_base::handshake_type type) {
  note_call();
  clear_errors();
  if (!role_set_) { // (once: a call after WANT_READ continues the handshake)
    role_set_ = true;
    if (type == asio::ssl::stream_base::server)
      SSL_set_accept_state(ssl_);
    else
      SSL_set_connect_state(ssl_);
  }
  int ret = SSL_do_handshake(ssl_);
  return finish(ret, 0, true);
}

TlsCore::Step TlsCore::read(asio::mutable_buffer b) {
  note_call();
  clear_errors();
  if (b.size() == 0)
    return {};
  std::size_t got = 0;
  int ret = SSL_read_ex(ssl_, b.data(), b.size(), &got);
  return finish(ret, got, false);
}

TlsCore::Step TlsCore::read_pooled(const PooledRead& p) {
  note_call();
  clear_errors();
  auto& slot = *p.slot;
  if (!slot) {
    try {
      slot = p.pool->block();
    } catch (const std::bad_alloc&) {
      return {Next::done, false, asio::error::no_memory, 0};
    }
  }
  std::size_t got = 0;
  int ret = SSL_read_ex(ssl_, slot.get(), p.size(), &got);
  Step s = finish(ret, got, false);
  if (s.next != Next::done || s.ec || s.n == 0)
    slot.reset(); // (waiting, or nothing came: the block goes back)
  return s;
}

TlsCore::Step TlsCore::write(const asio::const_buffer* bufs, std::size_t count) {
  note_call();
  clear_errors();
  // Small buffers are gathered into one record (a head and the start of a body, say); a large
  // one is written from where it is, at most kMaxWrite bytes of it.
  std::size_t total = 0;
  for (std::size_t i = 0; i < count; ++i)
    total += bufs[i].size();
  if (total == 0)
    return {};
  std::size_t wrote = 0;
  int ret = 0;
  if (count > 1 && bufs[0].size() < kGather) {
    char gathered[kGather];
    std::size_t used = 0;
    for (std::size_t i = 0; i < count && used < kGather; ++i) {
      std::size_t take = std::min(bufs[i].size(), kGather - used);
      std::memcpy(gathered + used, bufs[i].data(), take);
      used += take;
    }
    ret = SSL_write_ex(ssl_, gathered, used, &wrote);
  } else {
    ret = SSL_write_ex(ssl_, bufs[0].data(), std::min(bufs[0].size(), kMaxWrite), &wrote);
  }
  Step s = finish(ret, wrote, true);
  if (s.next == Next::read) {
    // (Renegotiation is off; TLS 1.3 never reads in a write.)
    s.next = Next::done;
    s.ec = asio::error::operation_not_supported;
  }
  return s;
}

TlsCore::Step TlsCore::shutdown() {
  note_call();
  clear_errors();
  int ret = SSL_shutdown(ssl_);
  // 0: our close_notify went; the peer's is not waited for. Either way the call succeeded.
  Step s = finish(ret < 0 ? ret : 1, 0, true);
  s.next = Next::done;
  return s;
}

} // namespace weir::core::net
