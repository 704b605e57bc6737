/*
 * web_assets.h - the web UI's files (the .html, .css, .js and .svg of web/),
 * embedded into the binary at build time by web/embed.cmake (the generated
 * web_assets.c is part of the farm_webhook library). route_ui.c serves them.
 */
#ifndef FARM_WEBHOOK_WEB_ASSETS_H
#define FARM_WEBHOOK_WEB_ASSETS_H

#include <stddef.h>

typedef struct web_asset {
    const char *name;          /* the file name in web/ ("app.js") */
    const unsigned char *data; /* its bytes (NUL-terminated, not counted in len) */
    size_t len;
} web_asset;

extern const web_asset web_assets[];
extern const unsigned web_nassets;

#endif
