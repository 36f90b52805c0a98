/* The task as clients see it (WIRO_API.md): the task object of Detail and List, its outputs, the WebSocket frames,
 * and the publication of a task's status to the progress hub. Used by the endpoints, the worker, the callbacks and
 * the WebSocket sessions alike, so none of them depends on another. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "service/inputs.h"
#include "service/internal.h"

const char *cvx_svc_model_description(const cvx_svc *svc) {
    return cvx_svc_takes_image(svc)
               ? "CogVideoX image-to-video diffusion model (THUDM), run natively on the CPU by cogvideox."
               : "CogVideoX-2b text-to-video diffusion model (THUDM), run natively on the CPU by cogvideox.";
}

static json_t *num_str(long long v) {
    char b[32];
    snprintf(b, sizeof b, "%lld", v);
    return json_string(b);
}

/* ---- the task object ---- */

json_t *cvx_svc_model_json(const cvx_model_info *m) {
    return json_pack("{s:s, s:s, s:s, s:s}", "folder", m->model_name, "variant", m->model_variant[0] ? m->model_variant : "",
                     "weights", cvx_weights_kind_name(m->weights), "weightsOrigin", m->weights_origin);
}

void cvx_svc_default_base(const cvx_svc *svc, char *out, size_t size) {
    if (svc->public_url) snprintf(out, size, "%s", svc->public_url);
    else snprintf(out, size, "http://%s:%d", svc->listen_host, svc->port);
}

json_t *cvx_svc_outputs_json(const cvx_svc *svc, const cvx_svc_task *t, const char *base_url) {
    json_t *a = json_array();
    if (!t->out_name[0] || t->out_deleted) return a;
    char url[1200];
    snprintf(url, sizeof url, "%s/files/%s/%s", base_url, t->out_key, t->out_name);
    json_t *expire = json_null();
    if (svc->cfg.retention_days > 0) expire = num_str(t->out_time + (long long)svc->cfg.retention_days * 86400);
    json_array_append_new(
        a, json_pack("{s:o, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:s, s:s, s:s, s:i, s:o, s:s}", "id", num_str(t->id),
                     "name", t->out_name, "contenttype", "video/mp4", "parentid", "0", "uuid", t->uuid, "size",
                     num_str(t->out_size), "addedtime", num_str(t->out_time), "modifiedtime", num_str(t->out_time),
                     "accesskey", t->out_key, "foldercount", "0", "filecount", "0", "ispublic", 0, "expiretime",
                     expire, "url", url));
    return a;
}

json_t *cvx_svc_task_json(const cvx_svc *svc, const cvx_svc_task *t, const char *base_url) {
    json_t *params = json_loads(t->params ? t->params : "{}", 0, NULL);
    if (!params) params = json_object();
    char elapsed[32];
    snprintf(elapsed, sizeof elapsed, "%.4f", t->elapsed);
    json_t *o = json_object();
    json_object_set_new(o, "id", num_str(t->id));
    json_object_set_new(o, "uuid", json_string(t->uuid));
    json_object_set_new(o, "name", json_string(""));
    json_object_set_new(o, "socketaccesstoken", json_string(t->token));
    json_object_set_new(o, "parameters", params);
    json_object_set_new(o, "debugoutput", json_string(t->debugoutput ? t->debugoutput : ""));
    json_object_set_new(o, "debugerror", json_string(t->debugerror ? t->debugerror : ""));
    json_object_set_new(o, "starttime", num_str(t->starttime));
    json_object_set_new(o, "endtime", num_str(t->endtime));
    json_object_set_new(o, "elapsedseconds", json_string(elapsed));
    json_object_set_new(o, "status", json_string(t->status));
    json_object_set_new(o, "cps", json_string("0"));
    json_object_set_new(o, "totalcost", json_string("0"));
    json_object_set_new(o, "projectid", num_str(t->project));
    json_object_set_new(o, "modelid", json_string("1"));
    json_object_set_new(o, "runtype", json_string("model"));
    json_object_set_new(o, "callbackurl", json_string(t->callbackurl ? t->callbackurl : ""));
    json_object_set_new(o, "createtime", num_str(t->createtime));
    json_object_set_new(o, "canceltime", num_str(t->canceltime));
    json_object_set_new(o, "assigntime", num_str(t->assigntime));
    json_object_set_new(o, "accepttime", num_str(t->accepttime));
    json_object_set_new(o, "preprocessstarttime", num_str(t->preprocessstarttime));
    json_object_set_new(o, "preprocessendtime", num_str(t->preprocessendtime));
    json_object_set_new(o, "postprocessstarttime", num_str(t->postprocessstarttime));
    json_object_set_new(o, "postprocessendtime", num_str(t->postprocessendtime));
    json_object_set_new(o, "pexit", json_string(t->pexit));
    json_object_set_new(o, "modeldescription", json_string(cvx_svc_model_description(svc)));
    json_object_set_new(o, "modelslugowner", json_string(t->slugowner));
    json_object_set_new(o, "modelslugproject", json_string(t->slugproject));
    json_object_set_new(o, "outputs", cvx_svc_outputs_json(svc, t, base_url));
    json_object_set_new(o, "size", num_str(t->out_name[0] && !t->out_deleted ? t->out_size : 0));
    /* [ours] a queued task: how many tasks the one worker runs before it (the running one and the queued ones
     * before it); "0" for a task that is not waiting */
    long long ahead = 0;
    if (!strcmp(t->status, CVX_SVC_S_QUEUE)) {
        char err[256];
        long long before = cvx_svc_store_queued_before(svc->store, t->id, err, sizeof err);
        ahead = (before > 0 ? before : 0) + (atomic_load(&((cvx_svc *)svc)->running_task) != 0);
    }
    json_object_set_new(o, "queueposition", num_str(ahead));
    /* [ours] the animated WebP preview the generation wrote beside the MP4 (the page's thumbnail), or "": not in
     * outputs, which stays the one MP4 that Wiro clients take */
    char preview[1200] = "";
    if (t->out_name[0] && !t->out_deleted) {
        char path[1300];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s/" CVX_SVC_PREVIEW_NAME, svc->outputs_dir, t->out_key);
        long long size = 0;
        char err[256];
        if ((svc->blobs_in_store &&
             cvx_svc_store_output_size(svc->store, t->out_key, CVX_SVC_PREVIEW_NAME, &size, err, sizeof err) == 1) ||
            (stat(path, &st) == 0 && S_ISREG(st.st_mode)))
            snprintf(preview, sizeof preview, "%s/files/%s/" CVX_SVC_PREVIEW_NAME, base_url, t->out_key);
    }
    json_object_set_new(o, "previewurl", json_string(preview));
    return o;
}

char *cvx_svc_event_text(const char *type, const cvx_svc_task *t, json_t *message, int result) {
    json_t *o = json_pack("{s:s, s:o, s:s, s:o, s:b}", "type", type, "id", num_str(t->id), "tasktoken", t->token,
                          "message", message ? message : json_null(), "result", result);
    if (!o) return NULL;
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

void cvx_svc_publish_status(cvx_svc *svc, const cvx_svc_task *t) {
    int ord = cvx_svc_status_ordinal(t->status);
    json_t *msg = NULL;
    char base[512];
    if (!strcmp(t->status, CVX_SVC_S_POSTPROCESS_END)) {
        cvx_svc_default_base(svc, base, sizeof base);
        msg = cvx_svc_outputs_json(svc, t, base);
    }
    char *text = cvx_svc_event_text(t->status, t, msg, 1);
    if (text) cvx_svc_progress_publish(svc->progress, t->id, ord, 0, ord == CVX_SVC_EV_FINAL, text);
    free(text);
}

