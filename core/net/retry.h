/*
 * retry.h - QUIC address validation (RFC 9000 8.1): the Retry packet and its token.
 *
 * A Retry answers a client Initial without creating any state: it carries a token that
 * seals the client's address and port, its first Destination Connection ID and the time,
 * under a key derived from the relay's identity seed, so any worker, and the relay after
 * a restart, accepts it. The client repeats the token in its next Initial, which proves it
 * receives packets at the address it sends from: a spoofed source never comes back.
 * Token time is wall-clock (CLOCK_REALTIME), so relays sharing an identity agree on it.
 *
 * When the relay asks for one (conn.c decides): mode "always"; mode "auto" (the default)
 * once the handshakes in progress reach a quarter of --max-handshakes, or once the
 * sender's address holds half of its per-address handshakes.
 */
#ifndef WZP_RETRY_H
#define WZP_RETRY_H

#include <ngtcp2/ngtcp2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define WZP_RETRY_SECRET_LEN   32
#define WZP_RETRY_TOKEN_TTL_NS (10ull * 1000000000ull) /* a Retry token is good for 10 s */

enum wzp_retry_mode {
    WZP_RETRY_AUTO = 0, /* under handshake pressure (see above) */
    WZP_RETRY_ALWAYS,   /* every new connection validates its address first */
    WZP_RETRY_OFF,      /* never; per-address limits still apply */
};

/* "auto", "always", "off" -> mode; WZP_EINVAL otherwise. */
int wzp_retry_mode_parse(const char *text, enum wzp_retry_mode *mode);
const char *wzp_retry_mode_name(enum wzp_retry_mode mode);

/* The kind of token an Initial carries. */
enum wzp_token_kind {
    WZP_TOKEN_NONE = 0,
    WZP_TOKEN_RETRY,   /* looks like one of our Retry tokens (still to be verified) */
    WZP_TOKEN_FOREIGN, /* anything else: we never issue NEW_TOKEN tokens */
};
enum wzp_token_kind wzp_retry_token_kind(const ngtcp2_pkt_hd *hd);

/*
 * Write a Retry answering the client Initial hd from addr into buf (at least 256
 * bytes); retry_scid is the connection ID the client must use next. Returns its length,
 * or 0 if it could not be built.
 */
size_t wzp_retry_write(uint8_t *buf, size_t cap, const uint8_t secret[WZP_RETRY_SECRET_LEN],
                       const ngtcp2_pkt_hd *hd, const struct sockaddr *addr, socklen_t addrlen,
                       const ngtcp2_cid *retry_scid, uint64_t wall_ns);

/*
 * Verify the Retry token of the Initial hd from addr: true, with *odcid the client's
 * first Destination Connection ID, if we issued it to that address and port for this
 * DCID less than WZP_RETRY_TOKEN_TTL_NS ago.
 */
bool wzp_retry_verify(const uint8_t secret[WZP_RETRY_SECRET_LEN], const ngtcp2_pkt_hd *hd,
                      const struct sockaddr *addr, socklen_t addrlen, uint64_t wall_ns,
                      ngtcp2_cid *odcid);

/*
 * A stateless refusal of the Initial hd: an Initial carrying CONNECTION_CLOSE with
 * error_code (a QUIC transport error) and reason, so the client stops at once instead of
 * retrying until its handshake timeout. Used for an invalid Retry token (INVALID_TOKEN,
 * RFC 9000 8.1.3) and a source address at its connection limit (CONNECTION_REFUSED).
 * Smaller than the Initial it answers. Returns its length, or 0.
 */
size_t wzp_retry_write_refusal(uint8_t *buf, size_t cap, const ngtcp2_pkt_hd *hd,
                               uint64_t error_code, const char *reason);

/* Wall-clock nanoseconds, the time base of tokens. */
uint64_t wzp_retry_clock_ns(void);

#endif
