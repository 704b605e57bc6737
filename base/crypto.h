/*
 * crypto.h - the farm's cryptography, all through OpenSSL's libcrypto:
 * SHA-256, HMAC-SHA256, constant-time comparison, base64, RS256 JWTs and
 * random ids.
 */
#ifndef FARM_BASE_CRYPTO_H
#define FARM_BASE_CRYPTO_H

#include <stddef.h>

int crypto_sha256(unsigned char out[32], const void *p, size_t n);
int crypto_hmac_sha256(unsigned char out[32], const void *key, size_t keylen, const void *msg,
                       size_t n);

/* 1 when the n bytes at a and b are equal, 0 otherwise; time depends on n only. */
int crypto_memeq(const void *a, const void *b, size_t n);

/* 1 when the NUL-terminated strings are equal; time depends only on the
 * length of `expected` (the secret side), not on where they differ. */
int crypto_streq(const char *given, const char *expected);

/* The value of one hex digit (either case), or -1 when c is none. */
int crypto_hex_value(char c);

/* Lower-case hex of n bytes into out, which holds at least 2n+1 bytes. */
void crypto_hex(char *out, const unsigned char *p, size_t n);

/* Check a GitHub X-Hub-Signature-256 header ("sha256=<64 hex>") against the
 * body. Returns 0 when it matches, FARM_EAUTH when it is missing, malformed
 * or wrong. Compared in constant time. */
int crypto_github_signature_check(const char *secret, const void *body, size_t n,
                                  const char *header);

/* base64 (url=0: standard alphabet with padding; url=1: URL-safe, no
 * padding). Encode returns a heap string the caller frees (NULL on ENOMEM).
 * Decode accepts either padding style; returns 0 and a heap buffer in *out
 * (freed by the caller, NUL-terminated for convenience) or FARM_EINVALID.
 * Decoding is strict (no stray characters, no non-zero trailing bits), except
 * that the standard alphabet skips CR and LF, as in MIME and GitHub's
 * contents API. */
char *crypto_base64_encode(const void *p, size_t n, int url);
int crypto_base64_decode(unsigned char **out, size_t *outlen, const char *s, int url);

/* Sign an RS256 JWT: header {"alg":"RS256","typ":"JWT"}, the given claims
 * (a JSON object text), with a PEM private key. *out is a heap string the
 * caller frees. Returns 0, FARM_EINVALID (bad key or claims) or FARM_ENOMEM. */
int crypto_jwt_rs256(char **out, const char *pem_private_key, const char *claims_json);

/* Fill p with n cryptographically random bytes. Returns 0 or FARM_EIO. */
int crypto_random(void *p, size_t n);

/* A random id of 2*nbytes lower-case hex characters into out (2*nbytes+1). */
int crypto_random_hex(char *out, size_t nbytes);

#endif
