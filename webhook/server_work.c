/*
 * server_work.c - deferred work: handlers that must not hold a polling
 * thread (see routes.h, web_defer()) run on a pool of worker threads. The
 * connection is suspended while its work waits and runs, and resumed when
 * it is done, so the handler answers on its polling thread again.
 */
#include "server_internal.h"
#include "base/error.h"

/* Deferred requests waiting for a worker: past this, 503 (the tracker retries). */
#define MAX_QUEUED 10000

int web_defer(web_request *req, web_work work)
{
    server *s = req->srv;
    pthread_mutex_lock(&s->lock);
    if (s->stopping || s->nworkers == 0) {
        pthread_mutex_unlock(&s->lock);
        farm_error_set("the farm is shutting down");
        return FARM_EAGAIN;
    }
    if (s->queued >= MAX_QUEUED) {
        pthread_mutex_unlock(&s->lock);
        farm_error_set("the farm is busy: %d requests wait for the store", MAX_QUEUED);
        return FARM_EAGAIN;
    }
    s->queued++;
    req->work = work;
    req->defers++; /* read by this (the polling) thread only, after the handler returns */
    req->next_work = NULL;
    MHD_suspend_connection(req->conn);
    if (s->tail)
        s->tail->next_work = req;
    else
        s->head = req;
    s->tail = req;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

void *server__worker_main(void *arg)
{
    server *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->head && !s->stopping)
            pthread_cond_wait(&s->wake, &s->lock);
        web_request *req = s->head;
        if (!req)
            break; /* stopping, and the queue is drained */
        s->head = req->next_work;
        if (!s->head)
            s->tail = NULL;
        s->queued--;
        pthread_mutex_unlock(&s->lock);

        req->work(req);
        req->deferred = 1;
        MHD_resume_connection(req->conn); /* req belongs to the polling thread again */

        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

void server__workers_stop(server *s)
{
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i], NULL);
    s->nworkers = 0;
}
