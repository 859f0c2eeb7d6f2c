/* Preloaded into wrk so that every connection makes a full TLS handshake.
 *
 * wrk closes a connection with SSL_shutdown and SSL_clear and reuses the SSL object, and
 * SSL_clear keeps the session: the next handshake offers it (a session ID in TLS 1.2, a PSK in
 * TLS 1.3) and the server resumes it. Dropping the session first makes the next handshake a
 * new one, as for a client that has never connected, without changing the servers. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
int SSL_set_session(SSL *ssl, SSL_SESSION *session);

int SSL_clear(SSL *ssl) {
    static int (*real_clear)(SSL *);
    if (real_clear == NULL)
        real_clear = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
    SSL_set_session(ssl, NULL);
    return real_clear(ssl);
}
