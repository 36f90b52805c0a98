/* The endpoints of the task service (WIRO_API.md): one table of routes with their flags, and the handlers, which
 * get an authenticated project and the parsed body and fill a JSON reply. HTTP plumbing is in http.c. */
#ifndef CVX_SERVICE_API_H
#define CVX_SERVICE_API_H

#include <jansson.h>

#include "service/body.h"
#include "service/internal.h"

enum {
    CVX_SVC_ROUTE_AUTH = 1,     /* needs x-api-key (and the signature in signature mode) */
    CVX_SVC_ROUTE_STATE = 2,    /* changes state: its nonce is consumed (replay defence) */
    CVX_SVC_ROUTE_PREFIX = 4,   /* path is a prefix (Run/{owner}/{model}) */
};

typedef struct {
    cvx_svc *svc;
    const cvx_svc_project *project;
    json_t *fields;         /* the body's fields */
    const char *base_url;   /* what outputs[].url starts with */
    const char *path_rest;  /* for prefix routes: the path after the prefix */
    const cvx_svc_body_file *files; /* the body's file parts (Run of an image-to-video model: at most one) */
    int n_files;
} cvx_svc_request;

typedef struct {
    int status;             /* HTTP status */
    json_t *body;           /* the answer (stolen by http.c) */
    int retry_after_s;      /* > 0: a Retry-After header */
} cvx_svc_reply;

typedef struct {
    const char *path;
    int flags;
    void (*handler)(const cvx_svc_request *rq, cvx_svc_reply *rp);
} cvx_svc_route;

extern const cvx_svc_route cvx_svc_routes[];
extern const int cvx_svc_route_count;

/* {"result": false, "errors": [{"code": code, "message": ...}]} with the HTTP status. */
void cvx_svc_reply_error(cvx_svc_reply *rp, int http_status, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
