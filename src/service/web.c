/* The web page served at / (web.h): web/index.html, web/app.js and web/style.css, linked into the binary with the
 * assembler's .incbin as src/io/embedded.c does (CVX_EMBED_WEB_DIR is set by CMakeLists.txt, which also rebuilds
 * this file when one of them changes). The page itself is described in web/app.js. */
#include <pthread.h>
#include <string.h>

#include "service/web.h"

#ifndef CVX_EMBED_WEB_DIR
#error "CVX_EMBED_WEB_DIR (the web/ folder) must be defined: build with CMake"
#endif

#define CVX__WEB(sym, name)                                                                                            \
    __asm__(".section .rodata\n"                                                                                       \
            ".balign 16\n" #sym "_begin:\n"                                                                            \
            ".incbin \"" CVX_EMBED_WEB_DIR "/" name "\"\n" #sym "_end:\n"                                              \
            ".previous\n");                                                                                            \
    extern const unsigned char sym##_begin[] __asm__(#sym "_begin");                                                   \
    extern const unsigned char sym##_end[] __asm__(#sym "_end");

CVX__WEB(cvx__web_index, "index.html")
CVX__WEB(cvx__web_app, "app.js")
CVX__WEB(cvx__web_style, "style.css")

static cvx_svc_web_file files[4];
static pthread_once_t files_once = PTHREAD_ONCE_INIT;

/* Once, from whichever HTTP thread comes first: the sizes are differences of linker symbols, which C does not
 * accept in a static initializer. */
static void files_init(void) {
#define CVX__WEB_FILE(i, url, type, sym)                                                                               \
    files[i] = (cvx_svc_web_file){url, type, sym##_begin, (size_t)(sym##_end - sym##_begin)}
    CVX__WEB_FILE(0, "/", "text/html; charset=utf-8", cvx__web_index);
    CVX__WEB_FILE(1, "/index.html", "text/html; charset=utf-8", cvx__web_index);
    CVX__WEB_FILE(2, "/app.js", "text/javascript; charset=utf-8", cvx__web_app);
    CVX__WEB_FILE(3, "/style.css", "text/css; charset=utf-8", cvx__web_style);
#undef CVX__WEB_FILE
}

const cvx_svc_web_file *cvx_svc_web_find(const char *url) {
    if (!url) return NULL;
    pthread_once(&files_once, files_init);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (strcmp(url, files[i].path)) continue;
        return &files[i];
    }
    return NULL;
}
