/* The web page served at / (static files compiled into the binary): a form that signs Wiro API calls in the browser
 * (WebCrypto HMAC), follows the task over the WebSocket and plays the video. */
#ifndef CVX_SERVICE_WEB_H
#define CVX_SERVICE_WEB_H

#include <stddef.h>

typedef struct {
    const char *path;         /* "/", "/app.js", ... */
    const char *content_type;
    const unsigned char *data;
    size_t size;
} cvx_svc_web_file;

/* The file served at url, or NULL. */
const cvx_svc_web_file *cvx_svc_web_find(const char *url);

#endif
