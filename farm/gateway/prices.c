/*
 * prices.c - what a model call costs: the built-in price table, finding a
 * model's price, and the cost of one call's usage.
 *
 * The table was taken on GATEWAY_PRICES_DATE from the providers' own pages as
 * held by the search index (docs/gateway.md names them and their dates). The
 * caller's prices (config: agent.prices) are searched first, so a price that
 * changed, or a model newer than this table, never needs a new build; a model
 * found in neither is refused unless the run allows unpriced calls, so spend
 * is never silently counted as zero.
 */
#include "gateway.h"

#include <ctype.h>
#include <string.h>

/* Anthropic: a 5-minute cache write is 1.25 times the input price and a
 * 1-hour one 2 times; cache reads are per model (0.1x for most, 0.05x for
 * Opus 5.5 and Sonnet 5.5, 0.025x for Fable 5.1). OpenAI: no cache writes; a
 * cached input token at the cached-input price. */
#define CLAUDE(m, in, out, read)                                                                   \
    {                                                                                              \
        m, in, out, read, (in)*1.25, (in)*2.0, 0, 0, 0                                             \
    }
#define GPT(m, in, out, read)                                                                      \
    {                                                                                              \
        m, in, out, read, 0, 0, 0, 0, 0                                                            \
    }

static const gateway_price builtin[] = {
    /* Anthropic (platform.claude.com, "Pricing" and the model pages) */
    CLAUDE("claude-fable-5-1", 10.0, 50.0, 0.25),
    CLAUDE("claude-mythos-5-1", 10.0, 50.0, 0.25),
    CLAUDE("claude-fable-5", 10.0, 50.0, 1.00),
    CLAUDE("claude-mythos-5", 10.0, 50.0, 1.00),
    CLAUDE("claude-opus-5-5", 4.0, 20.0, 0.20),
    CLAUDE("claude-opus-5", 5.0, 25.0, 0.50),
    CLAUDE("claude-opus-4-8", 5.0, 25.0, 0.50),
    CLAUDE("claude-opus-4-7", 5.0, 25.0, 0.50),
    CLAUDE("claude-opus-4-6", 5.0, 25.0, 0.50),
    CLAUDE("claude-opus-4-5", 5.0, 25.0, 0.50),
    CLAUDE("claude-opus-4-1", 15.0, 75.0, 1.50),
    CLAUDE("claude-opus-4-0", 15.0, 75.0, 1.50),
    CLAUDE("claude-opus-4", 15.0, 75.0, 1.50), /* claude-opus-4-20250514 */
    CLAUDE("claude-sonnet-5-5", 2.0, 10.0, 0.10),
    CLAUDE("claude-sonnet-5", 2.0, 10.0, 0.20),
    CLAUDE("claude-sonnet-4-6", 3.0, 15.0, 0.30),
    /* Sonnet 4.5 and 4 with the 1M-token context: over 200K, 2x in, 1.5x out */
    {"claude-sonnet-4-5", 3.0, 15.0, 0.30, 3.75, 6.0, 200000, 2.0, 1.5},
    {"claude-sonnet-4-0", 3.0, 15.0, 0.30, 3.75, 6.0, 200000, 2.0, 1.5},
    {"claude-sonnet-4", 3.0, 15.0, 0.30, 3.75, 6.0, 200000, 2.0, 1.5},
    /* Haiku 5.5: over 100K prompt tokens, every rate 5x */
    {"claude-haiku-5-5", 0.10, 0.50, 0.01, 0.125, 0.20, 100000, 5.0, 5.0},
    CLAUDE("claude-haiku-4-5", 1.0, 5.0, 0.10),
    CLAUDE("claude-3-5-haiku", 0.80, 4.0, 0.08),

    /* OpenAI (developers.openai.com, "Pricing" and the model pages). GPT-5.4
     * and 5.5 and their pro models: over 272K input tokens, 2x in, 1.5x out. */
    {"gpt-5.5", 5.0, 30.0, 0.50, 0, 0, 272000, 2.0, 1.5},
    {"gpt-5.5-pro", 30.0, 180.0, 30.0, 0, 0, 272000, 2.0, 1.5},
    {"gpt-5.4", 2.50, 15.0, 0.25, 0, 0, 272000, 2.0, 1.5},
    {"gpt-5.4-pro", 30.0, 180.0, 30.0, 0, 0, 272000, 2.0, 1.5},
    GPT("gpt-5.4-mini", 0.75, 4.50, 0.075),
    GPT("gpt-5.4-nano", 0.20, 1.25, 0.02),
    GPT("gpt-5.3-codex", 1.75, 14.0, 0.175),
    GPT("gpt-5.2-codex", 1.75, 14.0, 0.175),
    GPT("gpt-5.2", 1.75, 14.0, 0.175),
    GPT("gpt-5.1-codex-max", 1.25, 10.0, 0.125),
    GPT("gpt-5.1-codex-mini", 0.25, 2.0, 0.025),
    GPT("gpt-5.1-codex", 1.25, 10.0, 0.125),
    GPT("gpt-5.1", 1.25, 10.0, 0.125),
    GPT("gpt-5-codex", 1.25, 10.0, 0.125),
    GPT("gpt-5-mini", 0.25, 2.0, 0.025),
    GPT("gpt-5-nano", 0.05, 0.40, 0.005),
    GPT("gpt-5", 1.25, 10.0, 0.125),
    GPT("gpt-4.1-mini", 0.40, 1.60, 0.10),
    GPT("gpt-4.1", 2.0, 8.0, 0.50),
    GPT("o4-mini", 1.10, 4.40, 0.275),
    GPT("o3", 2.0, 8.0, 0.50),
};

const gateway_price *gateway_prices_builtin(size_t *n)
{
    *n = sizeof(builtin) / sizeof(builtin[0]);
    return builtin;
}

static int digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

/* What may follow a table name in a model's name: a snapshot date
 * ("-20261007", "-2026-03-05") or "-latest", and nothing else, so that
 * "claude-opus-5" never prices "claude-opus-5-7". */
static int snapshot_suffix(const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return 1;
    if (strcmp(s, "-latest") == 0)
        return 1;
    if (n == 9 && s[0] == '-' && digits(s + 1, 8))
        return 1;
    return n == 11 && s[0] == '-' && digits(s + 1, 4) && s[5] == '-' && digits(s + 6, 2) &&
           s[8] == '-' && digits(s + 9, 2);
}

const gateway_price *gateway_price_find(const gateway_price *table, size_t n, const char *model)
{
    if (!table || !model || !*model)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (table[i].model && strcmp(table[i].model, model) == 0)
            return &table[i];
    for (size_t i = 0; i < n; i++) {
        size_t l = table[i].model ? strlen(table[i].model) : 0;
        if (l > 0 && strncmp(table[i].model, model, l) == 0 && snapshot_suffix(model + l))
            return &table[i];
    }
    return NULL;
}

double gateway_cost(const gateway_price *p, const gateway_usage *u)
{
    if (!p || !u)
        return 0;
    double ix = 1, ox = 1;
    int64_t prompt = u->input + u->cache_read + u->cache_write;
    if (p->long_above > 0 && prompt > p->long_above) {
        ix = p->long_input_x > 0 ? p->long_input_x : 1;
        ox = p->long_output_x > 0 ? p->long_output_x : 1;
    }
    int64_t w1h = u->cache_write_1h < u->cache_write ? u->cache_write_1h : u->cache_write;
    double w1h_price = p->cache_write_1h > 0 ? p->cache_write_1h : p->cache_write;
    double in = (double)u->input * p->input + (double)u->cache_read * p->cache_read +
                (double)(u->cache_write - w1h) * p->cache_write + (double)w1h * w1h_price;
    return (in * ix + (double)u->output * p->output * ox) / 1e6;
}
