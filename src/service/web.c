/* The web page's files (web.h). */
#include "service/web.h"

const cvx_svc_web_file *cvx_svc_web_find(const char *url) {
    (void)url;
    return NULL;
}
