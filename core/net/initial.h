/*
 * initial.h - read the server name (SNI) out of a client's first QUIC Initial packet
 * before any connection exists.
 *
 * Room affinity needs to know which room a new connection is for while the packet is
 * still in the worker that happened to receive it, so that the connection can be created
 * on the worker serving that room. Initial packets are protected with keys anyone can
 * derive from the packet's Destination Connection ID (RFC 9001 section 5.2), so the
 * relay opens the packet itself: remove header protection, open AES-128-GCM, take the
 * CRYPTO data that starts at offset 0 and read server_name from the ClientHello in it.
 * ngtcp2 opens the packet again when the connection is created; this costs one extra
 * Initial decryption per connection, never anything per media packet.
 *
 * Only QUIC version 1 is read. Nothing is allocated; the functions are thread-safe.
 */
#ifndef WZP_INITIAL_H
#define WZP_INITIAL_H

#include "tls.h"

#include <stddef.h>
#include <stdint.h>

/*
 * pkt: a UDP payload whose first QUIC packet is a version 1 client Initial. On WZP_OK,
 * sni holds the lower-cased server name. Otherwise:
 *   WZP_ENOTFOUND  the packet opened but its CRYPTO data at offset 0 is absent (a
 *                  retransmission of a later part) or has no server_name;
 *   WZP_EINVAL     not a v1 Initial, malformed, or the AEAD tag does not verify;
 *   WZP_ECRYPTO    GnuTLS could not set up a cipher.
 */
int wzp_initial_peek_sni(const uint8_t *pkt, size_t len, char sni[WZP_SNI_MAX + 1]);

/*
 * The frame half on its own (exposed for tests and the fuzzer): the decrypted payload
 * of an Initial packet. Same results as above.
 */
int wzp_initial_payload_sni(const uint8_t *payload, size_t len, char sni[WZP_SNI_MAX + 1]);

#endif
