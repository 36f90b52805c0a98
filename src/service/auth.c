/* Request authentication and the service's crypto on libcrypto; the rules are in auth.h. */
#include "service/auth.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

int cvx_svc_random_bytes(void *buf, size_t n) { return RAND_bytes(buf, (int)n) == 1 ? 0 : -1; }

int cvx_svc_random_token(char *out, size_t len) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    size_t o = 0;
    while (o < len) {
        uint8_t b[64];
        if (cvx_svc_random_bytes(b, sizeof b)) return -1;
        /* 62 * 4 = 248: rejecting bytes >= 248 keeps every character equally likely */
        for (size_t i = 0; i < sizeof b && o < len; i++)
            if (b[i] < 248) out[o++] = alphabet[b[i] % 62];
    }
    out[len] = 0;
    return 0;
}

void cvx_svc_hex(const uint8_t *in, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = 0;
}

int cvx_svc_uuid(char out[37]) {
    uint8_t b[16];
    if (cvx_svc_random_bytes(b, sizeof b)) return -1;
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    char h[33];
    cvx_svc_hex(b, 16, h);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
    return 0;
}

void cvx_svc_signature(const char *apikey, const char *secret, const char *nonce, char out[65]) {
    size_t sl = strlen(secret), nl = strlen(nonce);
    uint8_t msg[512];
    uint8_t mac[32];
    unsigned int mac_len = 0;
    if (sl + nl > sizeof msg) { /* never with our secrets and nonces; an impossible digest then */
        memset(out, 'x', 64);
        out[64] = 0;
        return;
    }
    memcpy(msg, secret, sl);
    memcpy(msg + sl, nonce, nl);
    HMAC(EVP_sha256(), apikey, (int)strlen(apikey), msg, sl + nl, mac, &mac_len);
    cvx_svc_hex(mac, 32, out);
}

int cvx_svc_signature_ok(const char *header, const char *apikey, const char *secret, const char *nonce) {
    if (!header) return 0;
    size_t len = strlen(header);
    while (len && isspace((unsigned char)header[len - 1])) len--;
    size_t start = len;
    while (start && !isspace((unsigned char)header[start - 1])) start--;
    if (len - start != 64) return 0;
    char got[64];
    for (size_t i = 0; i < 64; i++) got[i] = (char)tolower((unsigned char)header[start + i]);
    char want[65];
    cvx_svc_signature(apikey, secret, nonce, want);
    return CRYPTO_memcmp(got, want, 64) == 0;
}

void cvx_svc_keyfile_path(const char *store_path, char *out, size_t size) { snprintf(out, size, "%s.key", store_path); }

static int parse_key(const char *text, size_t len, uint8_t key[32]) {
    while (len && isspace((unsigned char)text[len - 1])) len--;
    if (len != 64) return -1;
    for (size_t i = 0; i < 32; i++) {
        unsigned v;
        char pair[3] = {text[2 * i], text[2 * i + 1], 0};
        if (!isxdigit((unsigned char)pair[0]) || !isxdigit((unsigned char)pair[1]) || sscanf(pair, "%2x", &v) != 1)
            return -1;
        key[i] = (uint8_t)v;
    }
    return 0;
}

int cvx_svc_keyfile_load(const char *path, int create, uint8_t key[32], char *err, size_t n) {
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0) {
            struct stat stt;
            if (fstat(fd, &stt) || !S_ISREG(stt.st_mode)) {
                close(fd);
                snprintf(err, n, "server key %s: not a regular file", path);
                return -1;
            }
            if (stt.st_mode & 077) {
                close(fd);
                snprintf(err, n, "server key %s: mode %03o lets others read it; chmod 600 it", path,
                         (unsigned)(stt.st_mode & 0777));
                return -1;
            }
            char text[80];
            ssize_t got = read(fd, text, sizeof text);
            close(fd);
            if (got < 0 || parse_key(text, (size_t)got, key)) {
                snprintf(err, n, "server key %s: not 64 hex digits", path);
                return -1;
            }
            return 0;
        }
        if (errno != ENOENT || !create) {
            snprintf(err, n, "server key %s: %s", path, strerror(errno));
            return -1;
        }
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            if (errno == EEXIST) continue; /* another process made it first: read theirs */
            snprintf(err, n, "server key %s: cannot create: %s", path, strerror(errno));
            return -1;
        }
        char text[66];
        if (cvx_svc_random_bytes(key, 32)) {
            close(fd);
            unlink(path);
            snprintf(err, n, "server key %s: no random bytes", path);
            return -1;
        }
        cvx_svc_hex(key, 32, text);
        text[64] = '\n';
        int ok = write(fd, text, 65) == 65 && fsync(fd) == 0;
        ok &= close(fd) == 0;
        if (!ok) {
            unlink(path);
            snprintf(err, n, "server key %s: cannot write: %s", path, strerror(errno));
            return -1;
        }
        return 0;
    }
    snprintf(err, n, "server key %s: cannot create", path);
    return -1;
}

void cvx_svc_apikey_hash(const uint8_t server_key[32], const char *apikey, char out[72]) {
    uint8_t mac[32];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), server_key, 32, (const uint8_t *)apikey, strlen(apikey), mac, &mac_len);
    memcpy(out, "h1:", 3);
    cvx_svc_hex(mac, 32, out + 3);
}

int cvx_svc_apikey_is_hashed(const char *stored) { return !strncmp(stored, "h1:", 3) && strlen(stored) == 67; }

int cvx_svc_project_hash_key(cvx_svc_store *store, const uint8_t server_key[32], cvx_svc_project *p, char *err,
                             size_t n) {
    if (cvx_svc_apikey_is_hashed(p->apikey)) return 0;
    char hashed[72], secret[128];
    cvx_svc_apikey_hash(server_key, p->apikey, hashed);
    uint8_t sealed[sizeof p->secret_enc];
    size_t sealed_len = 0;
    if (p->secret_enc_len) {
        int ok = cvx_svc_unseal(server_key, p->apikey, p->secret_enc, p->secret_enc_len, secret, sizeof secret) == 0 &&
                 cvx_svc_seal(server_key, hashed, secret, sealed, sizeof sealed, &sealed_len) == 0;
        OPENSSL_cleanse(secret, sizeof secret);
        if (!ok) {
            snprintf(err, n, "project %lld: its secret cannot be opened with the server key", p->id);
            return -1;
        }
    }
    int r = cvx_svc_store_project_rekey(store, p->id, p->apikey, hashed, sealed, sealed_len, err, n);
    if (r < 0) return -1;
    if (r > 0) {
        snprintf(p->apikey, sizeof p->apikey, "%s", hashed);
        memcpy(p->secret_enc, sealed, sealed_len);
        p->secret_enc_len = sealed_len;
    }
    return 0;
}

typedef struct {
    cvx_svc_project *list;
    size_t n, cap;
} project_list;

static void collect_clear(const cvx_svc_project *p, void *ud) {
    project_list *l = ud;
    if (cvx_svc_apikey_is_hashed(p->apikey)) return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        cvx_svc_project *nl = realloc(l->list, cap * sizeof *nl);
        if (!nl) return;
        l->list = nl;
        l->cap = cap;
    }
    l->list[l->n++] = *p;
}

int cvx_svc_store_hash_keys(cvx_svc_store *store, const uint8_t server_key[32], char *err, size_t n) {
    project_list l = {NULL, 0, 0};
    int r = cvx_svc_store_project_list(store, collect_clear, &l, err, n);
    for (size_t i = 0; r >= 0 && i < l.n; i++)
        if (cvx_svc_project_hash_key(store, server_key, &l.list[i], err, n)) r = -1;
    if (l.list) OPENSSL_cleanse(l.list, l.cap * sizeof *l.list);
    free(l.list);
    /* the keys in clear may still sit in old page images of the log (secure_delete cleared the database's) */
    if (r >= 0 && l.n > 0) cvx_svc_store_truncate_log(store, err, n);
    return r < 0 ? -1 : (int)l.n;
}

int cvx_svc_server_key_open(cvx_svc_store *store, const char *keypath, uint8_t key[32], char *err, size_t n) {
    cvx_svc_project p;
    long long sealed = 0;
    int has = cvx_svc_store_sealed_project(store, &p, &sealed, err, n);
    if (has < 0) return -1;
    if (has == 0) return cvx_svc_keyfile_load(keypath, 1, key, err, n) || cvx_svc_store_hash_keys(store, key, err, n) < 0
                             ? -1
                             : 0;
    struct stat st;
    if (lstat(keypath, &st) && errno == ENOENT) {
        snprintf(err, n,
                 "server key %s is missing, but the store holds the secrets of %lld signature projects sealed with it; "
                 "restore the key file from the store's backup (a new key could not verify them)",
                 keypath, sealed);
        return -1;
    }
    if (cvx_svc_keyfile_load(keypath, 0, key, err, n)) return -1;
    char secret[128];
    int ok = cvx_svc_unseal(key, p.apikey, p.secret_enc, p.secret_enc_len, secret, sizeof secret) == 0;
    OPENSSL_cleanse(secret, sizeof secret);
    if (!ok) {
        OPENSSL_cleanse(key, 32);
        snprintf(err, n,
                 "server key %s does not open the secrets sealed in the store (another store's key?); restore the key "
                 "file from the store's backup",
                 keypath);
        return -1;
    }
    /* keys that an older version stored in clear are replaced by their hash now */
    return cvx_svc_store_hash_keys(store, key, err, n) < 0 ? -1 : 0;
}

int cvx_svc_seal(const uint8_t key[32], const char *aad, const char *plain, uint8_t *out, size_t out_size,
                 size_t *out_len) {
    size_t pl = strlen(plain);
    if (out_size < 12 + pl + 16) return -1;
    if (cvx_svc_random_bytes(out, 12)) return -1;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0, ok = ctx != NULL;
    ok = ok && EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, out) == 1;
    ok = ok && EVP_EncryptUpdate(ctx, NULL, &len, (const uint8_t *)aad, (int)strlen(aad)) == 1;
    ok = ok && EVP_EncryptUpdate(ctx, out + 12, &len, (const uint8_t *)plain, (int)pl) == 1;
    ok = ok && EVP_EncryptFinal_ex(ctx, out + 12 + len, &len) == 1;
    ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out + 12 + pl) == 1;
    EVP_CIPHER_CTX_free(ctx);
    *out_len = 12 + pl + 16;
    return ok ? 0 : -1;
}

int cvx_svc_unseal(const uint8_t key[32], const char *aad, const uint8_t *in, size_t in_len, char *plain,
                   size_t plain_size) {
    if (in_len < 28 || in_len - 28 + 1 > plain_size) return -1;
    size_t cl = in_len - 28;
    uint8_t tag[16];
    memcpy(tag, in + 12 + cl, 16);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0, ok = ctx != NULL;
    ok = ok && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, in) == 1;
    ok = ok && EVP_DecryptUpdate(ctx, NULL, &len, (const uint8_t *)aad, (int)strlen(aad)) == 1;
    ok = ok && EVP_DecryptUpdate(ctx, (uint8_t *)plain, &len, in + 12, (int)cl) == 1;
    ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1;
    ok = ok && EVP_DecryptFinal_ex(ctx, (uint8_t *)plain + len, &len) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) {
        OPENSSL_cleanse(plain, plain_size);
        return -1;
    }
    plain[cl] = 0;
    return 0;
}

void cvx_svc_ws_accept(const char *key, char out[32]) {
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char buf[256];
    int n = snprintf(buf, sizeof buf, "%s%s", key, guid);
    if (n < 0 || (size_t)n >= sizeof buf) n = 0;
    uint8_t digest[20];
    SHA1((const uint8_t *)buf, (size_t)n, digest);
    EVP_EncodeBlock((uint8_t *)out, digest, 20);
}

static int nonce_valid(const char *s) {
    size_t i = 0;
    if (s[0] == '-') i = 1;
    if (!s[i]) return 0;
    for (; s[i]; i++)
        if (!isdigit((unsigned char)s[i]) || i >= 40) return 0;
    return 1;
}

static void deny(cvx_svc_auth_result *res, int status, const char *msg) {
    res->ok = 0;
    res->http_status = status;
    snprintf(res->message, sizeof res->message, "%s", msg);
}

void cvx_svc_authenticate(cvx_svc_store *store, const uint8_t server_key[32], const char *apikey,
                          const char *nonce, const char *signature, int state_changing, long long now_s,
                          long long nonce_window_s, cvx_svc_project *project, cvx_svc_auth_result *res) {
    memset(res, 0, sizeof *res);
    char err[256];
    if (!apikey || !*apikey || strlen(apikey) >= sizeof project->apikey) {
        deny(res, 401, "Project authorization is not founded.");
        return;
    }
    /* the store holds the key's hash; a row stored in clear (an older version, a tool writing the store directly)
     * is found by the key itself and hashed on the spot. A key with ':' is never ours: a stolen hash is no key. */
    char hashed[72];
    cvx_svc_apikey_hash(server_key, apikey, hashed);
    int found = cvx_svc_store_project_by_key(store, hashed, project, err, sizeof err);
    if (found == 0 && !strchr(apikey, ':')) {
        found = cvx_svc_store_project_by_key(store, apikey, project, err, sizeof err);
        if (found == 1 && cvx_svc_project_hash_key(store, server_key, project, err, sizeof err)) found = -1;
    }
    if (found < 0) {
        deny(res, 503, "The service's store is unavailable while checking the project; try again.");
        return;
    }
    if (found == 0 || project->revoked) {
        deny(res, 401, "Project authorization is not founded.");
        return;
    }
    if (project->mode == CVX_SVC_MODE_KEY_ONLY) {
        res->ok = 1;
        return;
    }
    if (!nonce || !*nonce || !signature || !*signature) {
        deny(res, 401, "Project requires signature authentication. x-signature and x-nonce headers are required.");
        return;
    }
    if (!nonce_valid(nonce)) {
        deny(res, 401, "Project authorization is not valid. x-nonce must be an integer.");
        return;
    }
    char secret[128];
    if (cvx_svc_unseal(server_key, project->apikey, project->secret_enc, project->secret_enc_len, secret,
                       sizeof secret)) {
        deny(res, 500, "The project's secret cannot be read with this server's key file.");
        return;
    }
    int good = cvx_svc_signature_ok(signature, apikey, secret, nonce);
    OPENSSL_cleanse(secret, sizeof secret);
    if (!good) {
        deny(res, 401, "Project authorization is not valid.");
        return;
    }
    /* every nonce a signed call uses is recorded; a call that changes state refuses one recorded before and one
     * whose time is not now ± the window (unix seconds, or milliseconds from 10^11 on: Wiro's clients send both) */
    long long t = strtoll(nonce, NULL, 10);
    if (t >= 100000000000LL || t <= -100000000000LL) t /= 1000;
    int in_window = t >= now_s - nonce_window_s && t <= now_s + nonce_window_s;
    if (state_changing && !in_window) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "Nonce is out of date. x-nonce must be the current unix time in seconds or milliseconds (within %lld "
                 "seconds).",
                 nonce_window_s);
        deny(res, 401, msg);
        return;
    }
    /* kept until its own time has left the window too (one dated further ahead than the window is kept as if
     * dated now + window: the store stays bounded) */
    long long keep_from = t <= now_s ? now_s : t < now_s + nonce_window_s ? t : now_s + nonce_window_s;
    /* nonces are kept per project, under "p" + its id: a short key keeps the table and its writes small */
    char owner[32];
    snprintf(owner, sizeof owner, "p%lld", project->id);
    int fresh = state_changing ? cvx_svc_store_nonce_use(store, owner, nonce, now_s, keep_from,
                                                         nonce_window_s, err, sizeof err)
                               : cvx_svc_store_nonce_note(store, owner, nonce, now_s, keep_from,
                                                          nonce_window_s, err, sizeof err);
    if (fresh < 0 && state_changing) {
        deny(res, 503, "The service's store is unavailable while checking the nonce; try again.");
        return;
    }
    /* a read-only call goes on when the store cannot record its nonce (a full disk): it changes nothing, and a
     * call that changes state could not be stored either */
    if (state_changing && fresh == 0) {
        deny(res, 401,
             "Nonce has already been used. Send a new x-nonce with every call that changes state "
             "(Run, Cancel, Kill, InputOutputDelete).");
        return;
    }
    res->ok = 1;
}
