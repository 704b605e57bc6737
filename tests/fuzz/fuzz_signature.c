/*
 * fuzz_signature.c - libFuzzer target for the GitHub signature check. Input:
 * one byte n, then n bytes of secret, one byte m, m bytes of header, and the
 * body. Any header must be refused unless it is the right signature, and the
 * right signature (computed here) must always be accepted.
 */
#include "base/crypto.h"
#include "base/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t n = data[0];
    if (1 + n + 1 > size)
        return 0;
    char *secret = strndup((const char *)data + 1, n);
    size_t m = data[1 + n];
    if (2 + n + m > size) {
        free(secret);
        return 0;
    }
    char *header = strndup((const char *)data + 2 + n, m);
    const uint8_t *body = data + 2 + n + m;
    size_t blen = size - 2 - n - m;
    if (!secret || !header)
        abort();

    int rc = crypto_github_signature_check(secret, body, blen, header);
    unsigned char mac[32];
    char good[7 + 64 + 1] = "sha256=";
    if (crypto_hmac_sha256(mac, secret, strlen(secret), body, blen) != 0)
        abort();
    crypto_hex(good + 7, mac, 32);
    if (rc == 0 && strcasecmp(header, good) != 0)
        __builtin_trap(); /* accepted something that is not the signature */
    if (crypto_github_signature_check(secret, body, blen, good) != 0 && *secret)
        __builtin_trap(); /* refused the right signature */
    free(secret);
    free(header);
    return 0;
}
