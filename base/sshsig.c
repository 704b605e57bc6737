/*
 * sshsig.c - OpenSSH private keys read, and SSHSIG signatures made with
 * them (see sshsig.h).
 *
 * The key file is PEM-like armor around base64 of:
 *   "openssh-key-v1\0", string cipher, string kdf, string kdfoptions,
 *   uint32 nkeys (1), string public key, string private section
 * and the private section (plain when cipher is "none") is:
 *   uint32 check, uint32 check, string type, key fields, string comment, pad
 * with Ed25519's fields string pub(32) and string priv(64: seed || pub), and
 * RSA's mpint n, e, d, iqmp, p, q.
 *
 * A signature signs, with the key's own algorithm,
 *   "SSHSIG", string namespace, string reserved (""), string "sha512",
 *   string SHA-512(message)
 * and is armored as base64 of
 *   "SSHSIG", uint32 1, string public key, string namespace, string "",
 *   string "sha512", string (string algorithm, string signature bytes).
 */
#include "sshsig.h"
#include "buf.h"
#include "crypto.h"
#include "error.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KEY_TEXT_MAX (64u << 10)
#define ARMOR_BEGIN  "-----BEGIN OPENSSH PRIVATE KEY-----"
#define ARMOR_END    "-----END OPENSSH PRIVATE KEY-----"
#define AUTH_MAGIC   "openssh-key-v1"

struct sshsig_key {
    char type[16];      /* "ssh-ed25519" or "ssh-rsa" */
    unsigned char *pub; /* the public key blob (string type, ...) */
    size_t publen;
    EVP_PKEY *pkey;
};

/* ---- reading SSH wire data ---- */

typedef struct rd {
    const unsigned char *p;
    size_t n;
} rd;

static int rd_u32(uint32_t *out, rd *r)
{
    if (r->n < 4)
        return -1;
    *out =
        ((uint32_t)r->p[0] << 24) | ((uint32_t)r->p[1] << 16) | ((uint32_t)r->p[2] << 8) | r->p[3];
    r->p += 4;
    r->n -= 4;
    return 0;
}

static int rd_str(const unsigned char **s, size_t *len, rd *r)
{
    uint32_t l;
    if (rd_u32(&l, r) < 0 || l > r->n)
        return -1;
    *s = r->p;
    *len = l;
    r->p += l;
    r->n -= l;
    return 0;
}

static int str_is(const unsigned char *s, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(s, want, len) == 0;
}

/* ---- writing SSH wire data ---- */

/* Each returns 0 or buf's error (the cap: the callers' buffers are large
 * enough for any key the parser accepts). */
static int wr_u32(buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    return buf_append(b, x, 4);
}

static int wr_str(buf *b, const void *p, size_t n)
{
    int rc = wr_u32(b, (uint32_t)n);
    return rc ? rc : buf_append(b, p, n);
}

static int wr_cstr(buf *b, const char *s)
{
    return wr_str(b, s, strlen(s));
}

static void ossl_error(const char *what)
{
    unsigned long e = ERR_get_error();
    char detail[256] = "no detail";
    if (e)
        ERR_error_string_n(e, detail, sizeof(detail));
    ERR_clear_error();
    farm_error_set("%s: %s", what, detail);
}

/* ---- the key file ---- */

/* The base64 between the armor lines, decoded. */
static int unarmor(unsigned char **out, size_t *outlen, const char *text)
{
    const char *b = strstr(text, ARMOR_BEGIN), *e;
    int rc;

    if (!b || !(e = strstr(b, ARMOR_END))) {
        if (strstr(text, "-----BEGIN") && strstr(text, "PRIVATE KEY-----"))
            farm_error_set("the signing key is a PEM key, not in OpenSSH's format; convert it "
                           "with `ssh-keygen -p -f KEY` (which writes the OpenSSH format)");
        else
            farm_error_set("the signing key is not an OpenSSH private key (expected a "
                           "\"" ARMOR_BEGIN "\" block, as ssh-keygen writes)");
        return FARM_EINVALID;
    }
    b += strlen(ARMOR_BEGIN);
    size_t n = (size_t)(e - b);
    char *body = malloc(n + 1);
    if (!body) {
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (b[i] != '\n' && b[i] != '\r' && b[i] != ' ' && b[i] != '\t')
            body[k++] = b[i];
    body[k] = '\0';
    rc = crypto_base64_decode(out, outlen, body, 0);
    OPENSSL_cleanse(body, n + 1);
    free(body);
    if (rc) {
        farm_error_set("the signing key's base64 is malformed");
        return FARM_EINVALID;
    }
    return 0;
}

static int bad_key(const char *why)
{
    farm_error_set("the signing key is malformed: %s", why);
    return FARM_EINVALID;
}

static int key_ed25519(sshsig_key *k, rd *r)
{
    const unsigned char *pub, *priv;
    size_t publen, privlen;

    if (rd_str(&pub, &publen, r) < 0 || rd_str(&priv, &privlen, r) < 0 || publen != 32 ||
        privlen != 64 || memcmp(priv + 32, pub, 32) != 0)
        return bad_key("bad Ed25519 fields");
    if (!(k->pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, priv, 32))) {
        ossl_error("the signing key");
        return FARM_EINVALID;
    }
    return 0;
}

/* An RSA key from its OpenSSH fields; the CRT exponents are derived. */
static int key_rsa(sshsig_key *k, rd *r)
{
    const unsigned char *f[6];
    size_t fl[6];
    BIGNUM *bn[6] = {0}, *dmp1 = NULL, *dmq1 = NULL, *t = NULL;
    BN_CTX *ctx = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    int rc = FARM_EINVALID;

    for (int i = 0; i < 6; i++)
        if (rd_str(&f[i], &fl[i], r) < 0 || fl[i] == 0 || fl[i] > 2048)
            return bad_key("bad RSA fields");
    for (int i = 0; i < 6; i++)
        if (!(bn[i] = BN_bin2bn(f[i], (int)fl[i], NULL)))
            goto ossl;
    /* n e d iqmp p q */
    if (BN_num_bits(bn[0]) < 2048) {
        farm_error_set("the signing key is RSA with %d bits; use at least 2048 (or Ed25519)",
                       BN_num_bits(bn[0]));
        goto out;
    }
    if (!(ctx = BN_CTX_new()) || !(dmp1 = BN_new()) || !(dmq1 = BN_new()) || !(t = BN_new()))
        goto ossl;
    if (!BN_sub(t, bn[4], BN_value_one()) || !BN_mod(dmp1, bn[2], t, ctx) ||
        !BN_sub(t, bn[5], BN_value_one()) || !BN_mod(dmq1, bn[2], t, ctx))
        goto ossl;
    if (!(bld = OSSL_PARAM_BLD_new()) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn[0]) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn[1]) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, bn[2]) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR1, bn[4]) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR2, bn[5]) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT1, dmp1) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT2, dmq1) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, bn[3]) ||
        !(params = OSSL_PARAM_BLD_to_param(bld)))
        goto ossl;
    if (!(pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) ||
        EVP_PKEY_fromdata_init(pctx) <= 0 ||
        EVP_PKEY_fromdata(pctx, &k->pkey, EVP_PKEY_KEYPAIR, params) <= 0)
        goto ossl;
    rc = 0;
    goto out;
ossl:
    ossl_error("the signing key (RSA)");
out:
    EVP_PKEY_CTX_free(pctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_CTX_free(ctx);
    BN_clear_free(dmp1);
    BN_clear_free(dmq1);
    BN_clear_free(t);
    for (int i = 0; i < 6; i++)
        BN_clear_free(bn[i]);
    return rc;
}

/* The outer structure: cipher none, one key, the private section's checks. */
static int key_read(sshsig_key *k, const unsigned char *d, size_t n)
{
    rd r = {d, n}, priv;
    const unsigned char *cipher, *kdf, *kdfopt, *pub, *sec, *type;
    size_t cipherlen, kdflen, kdfoptlen, publen, seclen, typelen;
    uint32_t nkeys, c1, c2;

    if (n < sizeof(AUTH_MAGIC) || memcmp(d, AUTH_MAGIC, sizeof(AUTH_MAGIC)) != 0)
        return bad_key("no openssh-key-v1 header");
    r.p += sizeof(AUTH_MAGIC);
    r.n -= sizeof(AUTH_MAGIC);
    if (rd_str(&cipher, &cipherlen, &r) < 0 || rd_str(&kdf, &kdflen, &r) < 0 ||
        rd_str(&kdfopt, &kdfoptlen, &r) < 0 || rd_u32(&nkeys, &r) < 0)
        return bad_key("truncated header");
    if (!str_is(cipher, cipherlen, "none") || !str_is(kdf, kdflen, "none")) {
        farm_error_set("the signing key is encrypted with a passphrase, which the farm cannot "
                       "type; give it a key without one (`ssh-keygen -p -N '' -f KEY` removes "
                       "it from a copy; keep that file readable only by the farm)");
        return FARM_EINVALID;
    }
    if (nkeys != 1)
        return bad_key("the file must hold exactly one key");
    if (rd_str(&pub, &publen, &r) < 0 || rd_str(&sec, &seclen, &r) < 0)
        return bad_key("truncated key");
    priv = (rd){sec, seclen};
    if (rd_u32(&c1, &priv) < 0 || rd_u32(&c2, &priv) < 0 || c1 != c2)
        return bad_key("check bytes differ");
    if (rd_str(&type, &typelen, &priv) < 0)
        return bad_key("no key type");
    if (typelen >= sizeof(k->type)) {
        farm_error_set("the signing key's type is not supported; use ssh-ed25519 or ssh-rsa");
        return FARM_EUNSUPPORTED;
    }
    memcpy(k->type, type, typelen);
    k->type[typelen] = '\0';
    if (!(k->pub = malloc(publen))) {
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    memcpy(k->pub, pub, publen);
    k->publen = publen;
    if (!strcmp(k->type, "ssh-ed25519"))
        return key_ed25519(k, &priv);
    if (!strcmp(k->type, "ssh-rsa"))
        return key_rsa(k, &priv);
    farm_error_set("the signing key is of type %s, which the farm cannot sign with; use "
                   "ssh-ed25519 (or ssh-rsa)",
                   k->type);
    return FARM_EUNSUPPORTED;
}

int sshsig_key_parse(sshsig_key **out, const char *text)
{
    unsigned char *d = NULL;
    size_t n = 0;
    sshsig_key *k;
    int rc;

    *out = NULL;
    if (!text || strlen(text) > KEY_TEXT_MAX) {
        farm_error_set("the signing key is missing or larger than %u bytes", KEY_TEXT_MAX);
        return FARM_EINVALID;
    }
    if ((rc = unarmor(&d, &n, text)))
        return rc;
    if (!(k = calloc(1, sizeof(*k)))) {
        OPENSSL_cleanse(d, n);
        free(d);
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    rc = key_read(k, d, n);
    OPENSSL_cleanse(d, n);
    free(d);
    if (rc) {
        sshsig_key_free(k);
        return rc;
    }
    *out = k;
    return 0;
}

const char *sshsig_key_type(const sshsig_key *k)
{
    return k->type;
}

char *sshsig_key_public(const sshsig_key *k)
{
    char *b64 = crypto_base64_encode(k->pub, k->publen, 0), *s;
    if (!b64)
        return NULL;
    s = malloc(strlen(k->type) + strlen(b64) + 2);
    if (s)
        sprintf(s, "%s %s", k->type, b64);
    free(b64);
    return s;
}

void sshsig_key_free(sshsig_key *k)
{
    if (!k)
        return;
    EVP_PKEY_free(k->pkey);
    free(k->pub);
    free(k);
}

/* ---- signing ---- */

/* The raw signature of data with the key's algorithm. */
static int raw_sign(buf *sigblob, const sshsig_key *k, const buf *data)
{
    int rsa = !strcmp(k->type, "ssh-rsa");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char *sig = NULL;
    size_t siglen = 0;
    int rc = FARM_ERROR;

    if (!md || EVP_DigestSignInit(md, NULL, rsa ? EVP_sha512() : NULL, NULL, k->pkey) <= 0 ||
        EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)data->data, data->len) <= 0 ||
        !(sig = malloc(siglen)) ||
        EVP_DigestSign(md, sig, &siglen, (const unsigned char *)data->data, data->len) <= 0) {
        ossl_error("ssh signature");
        goto out;
    }
    if (wr_cstr(sigblob, rsa ? "rsa-sha2-512" : "ssh-ed25519") || wr_str(sigblob, sig, siglen)) {
        farm_error_set("ssh signature: out of memory");
        goto out;
    }
    rc = 0;
out:
    free(sig);
    EVP_MD_CTX_free(md);
    return rc;
}

int sshsig_sign(char **out, const sshsig_key *k, const char *ns, const void *msg, size_t n)
{
    unsigned char h[64];
    unsigned int hl = 0;
    buf data = BUF_INIT(4096), sigblob = BUF_INIT(4096), blob = BUF_INIT(16384),
        armor = BUF_INIT(32768);
    char *b64 = NULL;
    int rc;

    *out = NULL;
    if (!ns || !*ns) {
        farm_error_set("ssh signature: a namespace is required");
        return FARM_EINVALID;
    }
    if (!EVP_Digest(n ? msg : "", n, h, &hl, EVP_sha512(), NULL) || hl != 64) {
        ossl_error("ssh signature: sha512");
        return FARM_ERROR;
    }
    int e = buf_append(&data, "SSHSIG", 6) || wr_cstr(&data, ns) || wr_cstr(&data, "") ||
            wr_cstr(&data, "sha512") || wr_str(&data, h, 64);
    if (e) {
        farm_error_set("ssh signature: the namespace is too long");
        rc = FARM_EINVALID;
        goto out;
    }
    if ((rc = raw_sign(&sigblob, k, &data)))
        goto out;
    e = buf_append(&blob, "SSHSIG", 6) || wr_u32(&blob, 1) || wr_str(&blob, k->pub, k->publen) ||
        wr_cstr(&blob, ns) || wr_cstr(&blob, "") || wr_cstr(&blob, "sha512") ||
        wr_str(&blob, sigblob.data, sigblob.len);
    if (e || !(b64 = crypto_base64_encode(blob.data, blob.len, 0))) {
        farm_error_set("out of memory");
        rc = FARM_ENOMEM;
        goto out;
    }
    e = buf_puts(&armor, "-----BEGIN SSH SIGNATURE-----\n");
    for (size_t i = 0, l = strlen(b64); i < l && !e; i += 70)
        e = buf_append(&armor, b64 + i, l - i < 70 ? l - i : 70) || buf_putc(&armor, '\n');
    e = e || buf_puts(&armor, "-----END SSH SIGNATURE-----\n");
    if (e || !(*out = buf_detach(&armor))) {
        farm_error_set("out of memory");
        rc = FARM_ENOMEM;
    }
out:
    free(b64);
    buf_free(&data);
    buf_free(&sigblob);
    buf_free(&blob);
    buf_free(&armor);
    return rc;
}
