/*
 * test_crypto.c - digests, webhook signatures, base64, RS256 JWTs and random ids.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/crypto.h"
#include "base/error.h"

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GitHub's published test vector for X-Hub-Signature-256. */
static const char gh_secret[] = "It's a Secret to Everybody";
static const char gh_body[] = "Hello, World!";
static const char gh_sig[] =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

static void hex_of(char *out, const unsigned char *p, size_t n)
{
    crypto_hex(out, p, n);
}

static void sha256_and_hmac_vectors(void **state)
{
    unsigned char d[32];
    char hex[65];
    assert_int_equal(crypto_sha256(d, "abc", 3), 0);
    hex_of(hex, d, 32);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(crypto_sha256(d, NULL, 0), 0);
    hex_of(hex, d, 32);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* RFC 4231 test case 2 */
    const char *msg = "what do ya want for nothing?";
    assert_int_equal(crypto_hmac_sha256(d, "Jefe", 4, msg, strlen(msg)), 0);
    hex_of(hex, d, 32);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* empty key and message are allowed */
    assert_int_equal(crypto_hmac_sha256(d, NULL, 0, NULL, 0), 0);
    hex_of(hex, d, 32);
    assert_string_equal(hex, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

static void constant_time_comparisons(void **state)
{
    assert_true(crypto_memeq("abcd", "abcd", 4));
    assert_false(crypto_memeq("abcd", "abce", 4));
    assert_true(crypto_memeq("x", "y", 0));
    assert_true(crypto_streq("token", "token"));
    assert_false(crypto_streq("token", "tokeN"));
    assert_false(crypto_streq("tok", "token"));
    assert_false(crypto_streq("tokenx", "token"));
    assert_false(crypto_streq("", "token"));
    assert_true(crypto_streq("", ""));
    assert_false(crypto_streq(NULL, "token"));
    assert_false(crypto_streq("token", NULL));
}

static void github_vector_passes(void **state)
{
    assert_int_equal(crypto_github_signature_check(gh_secret, gh_body, strlen(gh_body), gh_sig), 0);
}

static void github_bad_signatures_fail(void **state)
{
    size_t n = strlen(gh_body);
    char sig[128];

    /* missing */
    assert_int_equal(crypto_github_signature_check(gh_secret, gh_body, n, NULL), FARM_EAUTH);
    assert_non_null(strstr(farm_error_last(), "missing"));
    assert_int_equal(crypto_github_signature_check(gh_secret, gh_body, n, ""), FARM_EAUTH);

    /* one hex digit changed */
    strcpy(sig, gh_sig);
    sig[strlen(sig) - 1] = '8';
    assert_int_equal(crypto_github_signature_check(gh_secret, gh_body, n, sig), FARM_EAUTH);
    strcpy(sig, gh_sig);
    sig[7] = '8';
    assert_int_equal(crypto_github_signature_check(gh_secret, gh_body, n, sig), FARM_EAUTH);

    /* wrong prefix (GitHub's old SHA-1 header, or none) */
    snprintf(sig, sizeof(sig), "sha1=%s", gh_sig + 7);
    assert_int_equal(crypto_github_signature_check(gh_secret, gh_body, n, sig), FARM_EAUTH);
    snprintf(sig, sizeof(sig), "%s", gh_sig + 7);
    assert_int_equal(crypto_github_signature_check(gh_secret, gh_body, n, sig), FARM_EAUTH);
    snprintf(sig, sizeof(sig), "SHA256=%s", gh_sig + 7);
    assert_int_equal(crypto_github_signature_check(gh_secret, gh_body, n, sig), FARM_EAUTH);

    /* wrong length: one digit short, one extra, trailing newline */
    snprintf(sig, sizeof(sig), "%.*s", (int)strlen(gh_sig) - 1, gh_sig);
    assert_int_equal(crypto_github_signature_check(gh_secret, gh_body, n, sig), FARM_EAUTH);
    snprintf(sig, sizeof(sig), "%s0", gh_sig);
    assert_int_equal(crypto_github_signature_check(gh_secret, gh_body, n, sig), FARM_EAUTH);
    snprintf(sig, sizeof(sig), "%s\n", gh_sig);
    assert_int_equal(crypto_github_signature_check(gh_secret, gh_body, n, sig), FARM_EAUTH);
    assert_int_equal(crypto_github_signature_check(gh_secret, gh_body, n, "sha256="), FARM_EAUTH);

    /* upper-case hex is not what GitHub sends */
    strcpy(sig, gh_sig);
    for (char *p = sig + 7; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    assert_int_equal(crypto_github_signature_check(gh_secret, gh_body, n, sig), FARM_EAUTH);

    /* the body or the secret changed */
    assert_int_equal(crypto_github_signature_check(gh_secret, "Hello, World?", n, gh_sig),
                     FARM_EAUTH);
    assert_int_equal(crypto_github_signature_check(gh_secret, gh_body, n - 1, gh_sig), FARM_EAUTH);
    assert_int_equal(
        crypto_github_signature_check("It's a secret to everybody", gh_body, n, gh_sig),
        FARM_EAUTH);
    /* no secret configured never verifies */
    assert_int_equal(crypto_github_signature_check("", gh_body, n, gh_sig), FARM_EAUTH);
    assert_int_equal(crypto_github_signature_check(NULL, gh_body, n, gh_sig), FARM_EAUTH);
}

/* Encode and decode, checking both the text and the round trip. */
static void b64_check(const char *raw, size_t n, int url, const char *want)
{
    char *enc = crypto_base64_encode(raw, n, url);
    assert_non_null(enc);
    assert_string_equal(enc, want);
    unsigned char *dec = NULL;
    size_t declen = 99;
    assert_int_equal(crypto_base64_decode(&dec, &declen, enc, url), 0);
    assert_int_equal(declen, n);
    assert_memory_equal(dec, raw, n);
    assert_int_equal(dec[n], '\0');
    free(dec);
    free(enc);
}

static void base64_rfc4648_vectors(void **state)
{
    static const char *std[][2] = {{"", ""},
                                   {"f", "Zg=="},
                                   {"fo", "Zm8="},
                                   {"foo", "Zm9v"},
                                   {"foob", "Zm9vYg=="},
                                   {"fooba", "Zm9vYmE="},
                                   {"foobar", "Zm9vYmFy"}};
    static const char *url[][2] = {
        {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof(std) / sizeof(std[0]); i++) {
        b64_check(std[i][0], strlen(std[i][0]), 0, std[i][1]);
        b64_check(url[i][0], strlen(url[i][0]), 1, url[i][1]);
    }
    /* the two alphabets differ in 62 and 63 */
    b64_check("\xfb\xff", 2, 0, "+/8=");
    b64_check("\xfb\xff", 2, 1, "-_8");
    b64_check("\xfb\xef\xbe", 3, 0, "++++");
    b64_check("\xff\xff\xff", 3, 1, "____");
}

static void base64_round_trips_random_data(void **state)
{
    unsigned char raw[257];
    assert_int_equal(crypto_random(raw, sizeof(raw)), 0);
    for (size_t n = 0; n <= sizeof(raw); n += 1 + n / 7) {
        for (int url = 0; url <= 1; url++) {
            char *enc = crypto_base64_encode(raw, n, url);
            assert_non_null(enc);
            unsigned char *dec;
            size_t declen;
            assert_int_equal(crypto_base64_decode(&dec, &declen, enc, url), 0);
            assert_int_equal(declen, n);
            if (n)
                assert_memory_equal(dec, raw, n);
            free(dec);
            free(enc);
        }
    }
}

static void base64_padding_either_way_and_line_breaks(void **state)
{
    unsigned char *dec;
    size_t n;
    /* url mode also takes padded input, standard mode unpadded */
    assert_int_equal(crypto_base64_decode(&dec, &n, "Zm9vYg==", 1), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(dec, "foob", 4);
    free(dec);
    assert_int_equal(crypto_base64_decode(&dec, &n, "Zm9vYg", 0), 0);
    assert_int_equal(n, 4);
    free(dec);
    /* GitHub's contents API wraps lines */
    assert_int_equal(crypto_base64_decode(&dec, &n, "Zm9v\nYmFy\r\nYg==\n", 0), 0);
    assert_int_equal(n, 7);
    assert_memory_equal(dec, "foobarb", 7);
    free(dec);
}

static void base64_invalid_refused(void **state)
{
    static const char *bad_std[] = {
        "Z",        /* one character is not a byte */
        "Zm9vY",    /* 4n+1 characters */
        "Zg=",      /* padding that does not complete the quantum */
        "Zg===",    /* too much padding */
        "Zm9v=",    /* padding after a complete quantum */
        "Zh==",     /* non-zero trailing bits */
        "Zm9=",     /* non-zero trailing bits (3 chars) */
        "Zg==Zg==", /* data after padding */
        "Zm9v!",    /* not in the alphabet */
        "Zm 9v",    /* spaces are not line breaks */
        "-_8=",     /* URL alphabet in standard mode */
        "Zm9v\x80", /* high byte */
    };
    for (size_t i = 0; i < sizeof(bad_std) / sizeof(bad_std[0]); i++) {
        unsigned char *dec = (unsigned char *)"sentinel";
        size_t n = 7;
        assert_int_equal(crypto_base64_decode(&dec, &n, bad_std[i], 0), FARM_EINVALID);
        assert_null(dec);
        assert_int_equal(n, 0);
    }
    static const char *bad_url[] = {"+/8", "Zm9v\nYmFy", "Zh", "Zg="};
    for (size_t i = 0; i < sizeof(bad_url) / sizeof(bad_url[0]); i++) {
        unsigned char *dec;
        size_t n;
        assert_int_equal(crypto_base64_decode(&dec, &n, bad_url[i], 1), FARM_EINVALID);
        assert_null(dec);
    }
    unsigned char *dec;
    size_t n;
    assert_int_equal(crypto_base64_decode(&dec, &n, NULL, 0), FARM_EINVALID);
}

/* A fresh RSA key as PEM; traditional=1 writes PKCS#1 ("BEGIN RSA PRIVATE
 * KEY", as GitHub hands out App keys), 0 writes PKCS#8. */
static char *make_rsa_pem(EVP_PKEY **pkey_out, int traditional)
{
    EVP_PKEY *pkey = EVP_RSA_gen(2048);
    assert_non_null(pkey);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    if (traditional)
        assert_int_equal(PEM_write_bio_PrivateKey_traditional(bio, pkey, NULL, NULL, 0, NULL, NULL),
                         1);
    else
        assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL), 1);
    char *data;
    long len = BIO_get_mem_data(bio, &data);
    char *pem = malloc((size_t)len + 1);
    assert_non_null(pem);
    memcpy(pem, data, (size_t)len);
    pem[len] = '\0';
    BIO_free(bio);
    *pkey_out = pkey;
    return pem;
}

/* Split a JWT, decode its parts and verify the signature with pkey. */
static void check_jwt(const char *token, EVP_PKEY *pkey, const char *want_iss)
{
    const char *dot1 = strchr(token, '.');
    assert_non_null(dot1);
    const char *dot2 = strchr(dot1 + 1, '.');
    assert_non_null(dot2);
    assert_null(strchr(dot2 + 1, '.'));
    assert_null(strchr(token, '='));

    char *h = strndup(token, (size_t)(dot1 - token));
    char *c = strndup(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    unsigned char *hdec, *cdec, *sig;
    size_t hn, cn, sn;
    assert_int_equal(crypto_base64_decode(&hdec, &hn, h, 1), 0);
    assert_int_equal(crypto_base64_decode(&cdec, &cn, c, 1), 0);
    assert_int_equal(crypto_base64_decode(&sig, &sn, dot2 + 1, 1), 0);

    json_t *hj = json_loads((char *)hdec, 0, NULL);
    assert_non_null(hj);
    assert_string_equal(json_string_value(json_object_get(hj, "alg")), "RS256");
    assert_string_equal(json_string_value(json_object_get(hj, "typ")), "JWT");
    json_t *cj = json_loads((char *)cdec, 0, NULL);
    assert_non_null(cj);
    assert_string_equal(json_string_value(json_object_get(cj, "iss")), want_iss);
    assert_int_equal(json_integer_value(json_object_get(cj, "iat")), 1700000000);

    assert_int_equal(sn, 256); /* 2048-bit key */
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey), 1);
    size_t signed_len = (size_t)(dot2 - token);
    assert_int_equal(EVP_DigestVerify(md, sig, sn, (const unsigned char *)token, signed_len), 1);
    /* a changed claim no longer verifies */
    char *forged = strdup(token);
    forged[dot1 - token + 2] ^= 1;
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey), 1);
    assert_int_not_equal(EVP_DigestVerify(md, sig, sn, (const unsigned char *)forged, signed_len),
                         1);
    free(forged);
    EVP_MD_CTX_free(md);
    json_decref(hj);
    json_decref(cj);
    free(h);
    free(c);
    free(hdec);
    free(cdec);
    free(sig);
}

static void jwt_rs256_signs_and_verifies(void **state)
{
    const char *claims = "{\"iat\":1700000000,\"exp\":1700000600,\"iss\":\"12345\"}";
    for (int traditional = 0; traditional <= 1; traditional++) {
        EVP_PKEY *pkey;
        char *pem = make_rsa_pem(&pkey, traditional);
        char *token = NULL;
        assert_int_equal(crypto_jwt_rs256(&token, pem, claims), 0);
        assert_non_null(token);
        check_jwt(token, pkey, "12345");
        free(token);
        free(pem);
        EVP_PKEY_free(pkey);
    }
}

static void jwt_bad_key_or_claims(void **state)
{
    char *token = (char *)"sentinel";
    const char *claims = "{\"iat\":1700000000,\"iss\":\"1\"}";
    assert_int_equal(crypto_jwt_rs256(&token, "not a pem", claims), FARM_EINVALID);
    assert_null(token);
    assert_int_equal(crypto_jwt_rs256(&token,
                                      "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n"
                                      "-----END RSA PRIVATE KEY-----\n",
                                      claims),
                     FARM_EINVALID);
    assert_int_equal(crypto_jwt_rs256(&token, "", claims), FARM_EINVALID);
    assert_int_equal(crypto_jwt_rs256(&token, NULL, claims), FARM_EINVALID);

    /* an EC key is not an RSA key */
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    assert_non_null(ec);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(bio, ec, NULL, NULL, 0, NULL, NULL), 1);
    char *data;
    long len = BIO_get_mem_data(bio, &data);
    char *ecpem = malloc((size_t)len + 1);
    memcpy(ecpem, data, (size_t)len);
    ecpem[len] = '\0';
    BIO_free(bio);
    EVP_PKEY_free(ec);
    assert_int_equal(crypto_jwt_rs256(&token, ecpem, claims), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "RSA"));
    free(ecpem);

    /* good key, bad claims */
    EVP_PKEY *pkey;
    char *pem = make_rsa_pem(&pkey, 0);
    assert_int_equal(crypto_jwt_rs256(&token, pem, "[1,2]"), FARM_EINVALID);
    assert_int_equal(crypto_jwt_rs256(&token, pem, "{\"iat\":"), FARM_EINVALID);
    assert_int_equal(crypto_jwt_rs256(&token, pem, NULL), FARM_EINVALID);
    assert_null(token);
    free(pem);
    EVP_PKEY_free(pkey);
}

static void random_ids(void **state)
{
    char a[33], b[33];
    assert_int_equal(crypto_random_hex(a, 16), 0);
    assert_int_equal(crypto_random_hex(b, 16), 0);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strspn(a, "0123456789abcdef"), 32);
    assert_string_not_equal(a, b);
    char *big = malloc(2 * 1000 + 1);
    assert_int_equal(crypto_random_hex(big, 1000), 0);
    assert_int_equal(strlen(big), 2000);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sha256_and_hmac_vectors),
        cmocka_unit_test(constant_time_comparisons),
        cmocka_unit_test(github_vector_passes),
        cmocka_unit_test(github_bad_signatures_fail),
        cmocka_unit_test(base64_rfc4648_vectors),
        cmocka_unit_test(base64_round_trips_random_data),
        cmocka_unit_test(base64_padding_either_way_and_line_breaks),
        cmocka_unit_test(base64_invalid_refused),
        cmocka_unit_test(jwt_rs256_signs_and_verifies),
        cmocka_unit_test(jwt_bad_key_or_claims),
        cmocka_unit_test(random_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
