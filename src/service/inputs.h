/* The input files of Run (image-to-video: inputImage), as a multipart file part or an http(s) URL that the API node
 * fetches. A URL is fetched with libcurl under limits (CVX_SVC_INPUT_MAX bytes, CVX_SVC_INPUT_TIMEOUT_S seconds, at
 * most CVX_SVC_INPUT_REDIRECTS redirects, http and https only, no proxy) and, unless allow_private_inputs, never
 * from a loopback, private, link-local or otherwise internal address (every address a name resolves to, redirects
 * included: cvx_svc_addr_internal). The bytes are decoded by the frame reader (media/frame_reader.h) to check that
 * they are a picture; the task stores the bytes, the worker decodes them again. */
#ifndef CVX_SERVICE_INPUTS_H
#define CVX_SERVICE_INPUTS_H

#include <stddef.h>

#include "media/frame_reader.h"
#include "service/internal.h"

#define CVX_SVC_INPUT_MAX (10u << 20) /* 10 MiB per input file */
#define CVX_SVC_INPUT_TIMEOUT_S 20
#define CVX_SVC_INPUT_REDIRECTS 3

/* 1 when the served model takes an image (its kind is i2v). */
int cvx_svc_takes_image(const cvx_svc *svc);
/* URL fetches at once: at most http_threads - 1 (and CVX_SVC_FETCH_SLOTS), one per project (each runs on a thread
 * of its own while its connection is suspended, http.c). 0: the slot is taken (cvx_svc_input_fetch_end after);
 * 1: this project already fetches one; 2: the slots are all taken. */
int cvx_svc_input_fetch_begin(cvx_svc *svc, long long project);
void cvx_svc_input_fetch_end(cvx_svc *svc, long long project);
/* Fetches url into *data (malloc'ed, *size bytes): 0, or -1 with a message for the client in why. Gives up
 * when the service stops. */
int cvx_svc_input_fetch(const cvx_svc *svc, const char *url, void **data, size_t *size, char *why, size_t why_size);
/* Decodes an image file's bytes (the first picture FFmpeg finds in them): 0 (out filled; cvx_frames_free), or -1
 * with a message in why. */
int cvx_svc_input_decode(const void *data, size_t size, cvx_frames *out, char *why, size_t why_size);

#endif
