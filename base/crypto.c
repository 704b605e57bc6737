/*
 * crypto.c - hashing, MACs, base64, RS256 JWTs and random ids (see crypto.h).
 *
 * Everything goes through OpenSSL 3's EVP interfaces. OpenSSL keeps its own
 * per-thread error queue; every failure here drains it into the farm's error
 * slot so a stale OpenSSL error never surfaces in an unrelated later call.
 */
#include "crypto.h"
#include "error.h"

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Set the error slot to "what: <first OpenSSL error>" and clear OpenSSL's queue. */
static void ossl_error(const char *what)
{
    unsigned long e = ERR_get_error();
    char detail[256] = "no detail";
    if (e)
        ERR_error_string_n(e, detail, sizeof(detail));
    ERR_clear_error();
    farm_error_set("%s: %s", what, detail);
}

int crypto_sha256(unsigned char out[32], const void *p, size_t n)
{
    unsigned int len = 0;
    if (!EVP_Digest(n ? p : "", n, out, &len, EVP_sha256(), NULL) || len != 32) {
        ossl_error("sha256");
        return FARM_ERROR;
    }
    return 0;
}

int crypto_hmac_sha256(unsigned char out[32], const void *key, size_t keylen, const void *msg,
                       size_t n)
{
    size_t len = 0;
    /* EVP_Q_mac wants real pointers even for empty inputs. */
    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, keylen ? key : "", keylen, n ? msg : "", n,
                   out, 32, &len) ||
        len != 32) {
        ossl_error("hmac-sha256");
        return FARM_ERROR;
    }
    return 0;
}

int crypto_memeq(const void *a, const void *b, size_t n)
{
    if (n == 0)
        return 1;
    return CRYPTO_memcmp(a, b, n) == 0;
}

int crypto_streq(const char *given, const char *expected)
{
    if (!given || !expected)
        return 0;
    /* Walk the whole of `expected` whatever `given` holds. Reading `given`
     * stops at its own end; that branch depends only on the attacker's input. */
    size_t glen = strlen(given);
    size_t elen = strlen(expected);
    volatile unsigned char diff = (unsigned char)(glen != elen);
    for (size_t i = 0; i < elen; i++) {
        unsigned char g = i < glen ? (unsigned char)given[i] : 0;
        diff |= (unsigned char)(g ^ (unsigned char)expected[i]);
    }
    return diff == 0;
}

int crypto_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void crypto_hex(char *out, const unsigned char *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

int crypto_github_signature_check(const char *secret, const void *body, size_t n,
                                  const char *header)
{
    static const char prefix[] = "sha256=";
    const size_t plen = sizeof(prefix) - 1;
    if (!secret || !*secret) {
        farm_error_set("webhook signature: no secret configured");
        return FARM_EAUTH;
    }
    if (!header) {
        farm_error_set("webhook signature: X-Hub-Signature-256 missing");
        return FARM_EAUTH;
    }
    if (strncmp(header, prefix, plen) != 0 || strlen(header) != plen + 64) {
        farm_error_set("webhook signature: X-Hub-Signature-256 is not sha256=<64 hex digits>");
        return FARM_EAUTH;
    }
    unsigned char mac[32];
    char hex[65];
    if (crypto_hmac_sha256(mac, secret, strlen(secret), body, n))
        return FARM_EAUTH;
    crypto_hex(hex, mac, sizeof(mac));
    /* GitHub sends lower-case hex; anything else is not its signature. */
    int ok = crypto_memeq(header + plen, hex, 64);
    OPENSSL_cleanse(mac, sizeof(mac));
    OPENSSL_cleanse(hex, sizeof(hex));
    if (!ok) {
        farm_error_set("webhook signature: X-Hub-Signature-256 does not match the body");
        return FARM_EAUTH;
    }
    return 0;
}

/* ---- base64 ---------------------------------------------------------- */

char *crypto_base64_encode(const void *p, size_t n, int url)
{
    if (n > (SIZE_MAX / 4 - 1) * 3 || n > INT_MAX) {
        farm_error_set("base64: input of %zu bytes too large", n);
        return NULL;
    }
    size_t outlen = 4 * ((n + 2) / 3);
    char *out = malloc(outlen + 1);
    if (!out) {
        farm_error_set("base64: out of memory");
        return NULL;
    }
    int w = n ? EVP_EncodeBlock((unsigned char *)out, p, (int)n) : 0;
    out[w] = '\0';
    if (url) {
        size_t i;
        for (i = 0; out[i] && out[i] != '='; i++) {
            if (out[i] == '+')
                out[i] = '-';
            else if (out[i] == '/')
                out[i] = '_';
        }
        out[i] = '\0';
    }
    return out;
}

/* The 6-bit value of c in the chosen alphabet, or -1. */
static int b64_value(unsigned char c, int url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

int crypto_base64_decode(unsigned char **out, size_t *outlen, const char *s, int url)
{
    *out = NULL;
    *outlen = 0;
    if (!s) {
        farm_error_set("base64: no input");
        return FARM_EINVALID;
    }
    size_t slen = strlen(s);
    unsigned char *res = malloc(slen / 4 * 3 + 3 + 1);
    if (!res) {
        farm_error_set("base64: out of memory");
        return FARM_ENOMEM;
    }
    uint32_t acc = 0;
    size_t nchars = 0; /* alphabet characters seen */
    size_t npad = 0;
    size_t o = 0;
    for (size_t i = 0; i < slen; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!url && (c == '\n' || c == '\r'))
            continue; /* MIME-style line breaks (GitHub's contents API) */
        if (c == '=') {
            npad++;
            continue;
        }
        int v = b64_value(c, url);
        if (v < 0 || npad) {
            free(res);
            if (v < 0)
                farm_error_set("base64: invalid character at offset %zu", i);
            else
                farm_error_set("base64: data after padding at offset %zu", i);
            return FARM_EINVALID;
        }
        acc = (acc << 6) | (uint32_t)v;
        if (++nchars % 4 == 0) {
            res[o++] = (unsigned char)(acc >> 16);
            res[o++] = (unsigned char)(acc >> 8);
            res[o++] = (unsigned char)acc;
            acc = 0;
        }
    }
    size_t rem = nchars % 4;
    /* Padding, when present, must complete the last quantum exactly. */
    int bad = rem == 1 || npad > 2 || (npad && (rem + npad) != 4);
    /* The unused low bits of a final partial quantum must be zero (canonical form). */
    if (!bad && rem == 2) {
        if (acc & 0xf)
            bad = 1;
        else
            res[o++] = (unsigned char)(acc >> 4);
    } else if (!bad && rem == 3) {
        if (acc & 0x3)
            bad = 1;
        else {
            res[o++] = (unsigned char)(acc >> 10);
            res[o++] = (unsigned char)(acc >> 2);
        }
    }
    if (bad) {
        free(res);
        farm_error_set("base64: bad length or padding");
        return FARM_EINVALID;
    }
    res[o] = '\0';
    *out = res;
    *outlen = o;
    return 0;
}

/* ---- RS256 JWT ---------------------------------------------------------- */

/* Never prompt on a terminal for an encrypted key's passphrase. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

int crypto_jwt_rs256(char **out, const char *pem_private_key, const char *claims_json)
{
    static const char header[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
    *out = NULL;
    if (!pem_private_key || !claims_json) {
        farm_error_set("jwt: no key or no claims");
        return FARM_EINVALID;
    }
    json_error_t jerr;
    json_t *claims = json_loads(claims_json, JSON_REJECT_DUPLICATES, &jerr);
    if (!claims) {
        farm_error_set("jwt: claims are not JSON: %s", jerr.text);
        return FARM_EINVALID;
    }
    int is_object = json_is_object(claims);
    json_decref(claims);
    if (!is_object) {
        farm_error_set("jwt: claims are not a JSON object");
        return FARM_EINVALID;
    }

    int rc = FARM_ENOMEM;
    EVP_PKEY *pkey = NULL;
    EVP_MD_CTX *md = NULL;
    char *h64 = NULL, *c64 = NULL, *s64 = NULL, *input = NULL, *token = NULL;
    unsigned char *sig = NULL;

    BIO *bio = BIO_new_mem_buf(pem_private_key, -1);
    if (!bio) {
        farm_error_set("jwt: out of memory");
        goto out;
    }
    pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    if (!pkey) {
        ossl_error("jwt: cannot read the PEM private key");
        rc = FARM_EINVALID;
        goto out;
    }
    if (!EVP_PKEY_is_a(pkey, "RSA")) {
        farm_error_set("jwt: the private key is not an RSA key");
        rc = FARM_EINVALID;
        goto out;
    }

    h64 = crypto_base64_encode(header, strlen(header), 1);
    c64 = crypto_base64_encode(claims_json, strlen(claims_json), 1);
    if (!h64 || !c64)
        goto out;
    size_t hlen = strlen(h64), clen = strlen(c64);
    input = malloc(hlen + 1 + clen + 1);
    if (!input)
        goto out;
    memcpy(input, h64, hlen);
    input[hlen] = '.';
    memcpy(input + hlen + 1, c64, clen + 1);

    size_t siglen = 0;
    md = EVP_MD_CTX_new();
    if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) != 1 ||
        EVP_DigestSign(md, NULL, &siglen, (unsigned char *)input, hlen + 1 + clen) != 1) {
        ossl_error("jwt: cannot sign");
        rc = FARM_EINVALID;
        goto out;
    }
    sig = malloc(siglen);
    if (!sig)
        goto out;
    if (EVP_DigestSign(md, sig, &siglen, (unsigned char *)input, hlen + 1 + clen) != 1) {
        ossl_error("jwt: cannot sign");
        rc = FARM_EINVALID;
        goto out;
    }
    s64 = crypto_base64_encode(sig, siglen, 1);
    if (!s64)
        goto out;
    size_t slen = strlen(s64);
    token = malloc(hlen + 1 + clen + 1 + slen + 1);
    if (!token)
        goto out;
    memcpy(token, input, hlen + 1 + clen);
    token[hlen + 1 + clen] = '.';
    memcpy(token + hlen + 1 + clen + 1, s64, slen + 1);
    *out = token;
    rc = 0;
out:
    if (rc == FARM_ENOMEM)
        farm_error_set("jwt: out of memory");
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    free(h64);
    free(c64);
    free(s64);
    free(input);
    free(sig);
    return rc;
}

/* ---- randomness ----------------------------------------------------------- */

int crypto_random(void *p, size_t n)
{
    unsigned char *q = p;
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        if (RAND_bytes(q, chunk) != 1) {
            ossl_error("random bytes");
            return FARM_EIO;
        }
        q += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

int crypto_random_hex(char *out, size_t nbytes)
{
    unsigned char stackbuf[64];
    unsigned char *raw = nbytes <= sizeof(stackbuf) ? stackbuf : malloc(nbytes);
    if (!raw) {
        farm_error_set("random id: out of memory");
        return FARM_ENOMEM;
    }
    int rc = crypto_random(raw, nbytes);
    if (rc == 0)
        crypto_hex(out, raw, nbytes);
    if (raw != stackbuf)
        free(raw);
    return rc;
}
