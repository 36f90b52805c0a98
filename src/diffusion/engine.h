/* The engine object shared by its lifecycle (engine.c) and one generation (pipeline.c); internal. */
#ifndef CVX_DIFFUSION_ENGINE_H
#define CVX_DIFFUSION_ENGINE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "cogvideox.h"
#include "core/error.h"
#include "core/log.h"
#include "core/threadpool.h"
#include "io/model.h"
#include "media/video.h"
#include "text/t5_tokenizer.h"

struct cvx_engine {
    char *dir;
    cvx_model *model; /* validated folder: configs, expected tensors */
    cvx_t5_tokenizer *tokenizer;
    json_t *scheduler_config;
    cvx_pool *pool;
    cvx_logger logger;
    cvx_error err;
    uint64_t model_id; /* model_identity(): part of every checkpoint's parameter digest */
    cvx_model_info info; /* defaults, limits and what the model is (cvx_engine_info) */
};

/* FNV-1a over n bytes, continuing from h (the model identity and the checkpoints' parameter digest). */
uint64_t cvx__fnv1a(uint64_t h, const void *data, size_t n);
/* The writers the engine's outputs go through: libcogvideox-media's (cvx_engine_use_writers), else the ones linked
 * into the program; NULL when there are none. */
const cvx_media_writers *cvx__engine_writers(void);

#endif
