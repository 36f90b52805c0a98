/* Authentication of the task service (Wiro's two project modes) and the crypto it needs (libcrypto):
 *  - signature mode: x-signature = lowercase hex HMAC-SHA256(key = API key, message = API secret + nonce), the
 *    model page's `echo -n "${SECRET}${NONCE}" | openssl dgst -sha256 -hmac "${KEY}"`; the header may be that
 *    command's whole output line ("SHA2-256(stdin)= <hex>"): its last blank-separated word is the digest,
 *    compared case-insensitively in constant time;
 *  - key-only mode: x-api-key alone;
 *  - replay defence: a state-changing call with a nonce this key used within the window is refused (read-only
 *    calls may repeat a nonce: the model page's recipe polls Task/Detail with the Run call's nonce);
 *  - secrets at rest: AES-256-GCM under a 32-byte server key kept in a file of mode 0600 next to the store
 *    (the server must see the plaintext secret to verify an HMAC, so hashing it is not an option). */
#ifndef CVX_SERVICE_AUTH_H
#define CVX_SERVICE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "service/store.h"

/* Cryptographically secure random bytes; 0 ok, -1 failure. */
int cvx_svc_random_bytes(void *buf, size_t n);
/* len characters from [A-Za-z0-9] (unbiased) + NUL; out has len + 1 bytes. */
int cvx_svc_random_token(char *out, size_t len);
/* Lowercase hex of n bytes into out (2n + 1 bytes). */
void cvx_svc_hex(const uint8_t *in, size_t n, char *out);
/* A random RFC 4122 version-4 UUID (37 bytes). */
int cvx_svc_uuid(char out[37]);

/* The expected signature (64 lowercase hex digits + NUL). */
void cvx_svc_signature(const char *apikey, const char *secret, const char *nonce, char out[65]);
/* 1 when header carries the right signature (see above), 0 otherwise. */
int cvx_svc_signature_ok(const char *header, const char *apikey, const char *secret, const char *nonce);

/* The server key file for a store path ("<store>.key"). */
void cvx_svc_keyfile_path(const char *store_path, char *out, size_t size);
/* Loads the 32-byte key (64 hex digits) from path, creating it (mode 0600, O_EXCL) when absent and create != 0. A
 * file readable or writable by group or others is refused, as ssh refuses such private keys. */
int cvx_svc_keyfile_load(const char *path, int create, uint8_t key[32], char *err, size_t err_size);

/* How API keys are stored: "h1:" + hex(HMAC-SHA256(key = server key, message = API key)), 67 characters, so the
 * store alone gives no usable key. The sealed secret's associated data is the stored form. */
void cvx_svc_apikey_hash(const uint8_t server_key[32], const char *apikey, char out[72]);
/* 1 when a stored key is such a hash (else a key stored in clear by an older version). */
int cvx_svc_apikey_is_hashed(const char *stored);
/* Replaces a project row that holds its key in clear by its hash (the secret resealed under the new associated
 * data); p is updated. 0 ok (or done meanwhile by another thread), -1 error. */
int cvx_svc_project_hash_key(cvx_svc_store *store, const uint8_t server_key[32], cvx_svc_project *p, char *err,
                             size_t err_size);

/* Opens the server key of a store: creates it (keyfile_load) only while the store holds no sealed secret; when it
 * holds some, a missing key file or one that does not open them is refused with a message (a new key would leave
 * every signature project unverifiable). 0 ok, -1 refused or failed. */
int cvx_svc_server_key_open(cvx_svc_store *store, const char *keypath, uint8_t key[32], char *err, size_t err_size);
/* Hashes every key the store holds in clear (cvx_svc_project_hash_key); the number hashed or -1. */
int cvx_svc_store_hash_keys(cvx_svc_store *store, const uint8_t server_key[32], char *err, size_t err_size);

/* Seals a secret (AES-256-GCM, random 96-bit IV, aad = the API key): out gets IV | ciphertext | tag. */
int cvx_svc_seal(const uint8_t key[32], const char *aad, const char *plain, uint8_t *out, size_t out_size,
                 size_t *out_len);
/* Opens a sealed secret into plain (NUL-terminated); -1 when the tag does not verify. */
int cvx_svc_unseal(const uint8_t key[32], const char *aad, const uint8_t *in, size_t in_len, char *plain,
                   size_t plain_size);

/* The Sec-WebSocket-Accept value of a Sec-WebSocket-Key (RFC 6455): base64(SHA-1(key + GUID)), 29 bytes. */
void cvx_svc_ws_accept(const char *key, char out[32]);

/* The result of authenticating a request. */
typedef struct {
    int ok;              /* 1: *project is the caller */
    int http_status;     /* 401, 500 or 503 (the store failed) when !ok */
    char message[160];   /* Wiro's message when !ok */
} cvx_svc_auth_result;

/* Authenticates a request from its headers (any may be NULL). state_changing: the call consumes its nonce. */
void cvx_svc_authenticate(cvx_svc_store *store, const uint8_t server_key[32], const char *apikey,
                          const char *nonce, const char *signature, int state_changing, long long now_s,
                          long long nonce_window_s, cvx_svc_project *project, cvx_svc_auth_result *res);

#endif
