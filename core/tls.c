/* tls.c - see tls.h. */
#include "tls.h"

#include "common.h"

#include <ctype.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <string.h>

const char *const wzp_tls_priority =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"
    "+CHACHA20-POLY1305:+AES-128-CCM:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:"
    "+GROUP-SECP384R1:%DISABLE_TLS13_COMPAT_MODE";

int wzp_tls_server_session(gnutls_session_t *out, gnutls_certificate_credentials_t cred,
                           gnutls_priority_t prio, ngtcp2_crypto_conn_ref *conn_ref)
{
    gnutls_session_t s;
    if (gnutls_init(&s, GNUTLS_SERVER | GNUTLS_ENABLE_EARLY_DATA | GNUTLS_NO_AUTO_SEND_TICKET |
                            GNUTLS_NO_END_OF_EARLY_DATA) != 0)
        return WZP_ECRYPTO;
    gnutls_datum_t alpn = {(unsigned char *)WZP_ALPN, sizeof WZP_ALPN - 1};
    if (gnutls_priority_set(s, prio) != 0 || ngtcp2_crypto_gnutls_configure_server_session(s) ||
        gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred) != 0 ||
        gnutls_alpn_set_protocols(s, &alpn, 1, GNUTLS_ALPN_MANDATORY) != 0) {
        gnutls_deinit(s);
        return WZP_ECRYPTO;
    }
    gnutls_session_set_ptr(s, conn_ref);
    *out = s;
    return WZP_OK;
}

bool wzp_tls_alpn_ok(gnutls_session_t s)
{
    gnutls_datum_t p;
    if (gnutls_alpn_get_selected_protocol(s, &p) != 0)
        return false;
    return p.size == sizeof WZP_ALPN - 1 && memcmp(p.data, WZP_ALPN, p.size) == 0;
}

bool wzp_tls_sni(gnutls_session_t s, char *out, size_t outlen)
{
    size_t len = outlen;
    unsigned type;
    if (gnutls_server_name_get(s, out, &len, &type, 0) != 0 || type != GNUTLS_NAME_DNS)
        return false;
    if (len >= outlen)
        return false;
    out[len] = '\0';
    for (size_t i = 0; i < len; i++)
        out[i] = (char)tolower((unsigned char)out[i]);
    return len > 0;
}
