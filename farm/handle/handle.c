/*
 * handle.c - the farm handle's accessors (handle.h).
 */
#include "handle.h"

const config *farm_config(const farm *f)
{
    return f->cfg;
}

store *farm_store(farm *f)
{
    return f->store;
}

stream_hub *farm_streams(farm *f)
{
    return f->streams;
}
