/*
 * sshsig.h - signing with an SSH key the way `ssh-keygen -Y sign` does
 * (OpenSSH's PROTOCOL.sshsig), for git's SSH-signed commits.
 *
 * The key is an OpenSSH private key file's text ("-----BEGIN OPENSSH PRIVATE
 * KEY-----"), unencrypted: Ed25519, or RSA (signed as rsa-sha2-512). The
 * signature is the armored "-----BEGIN SSH SIGNATURE-----" text, hash
 * sha512, which git puts in a commit's gpgsig header and `git verify-commit`
 * (gpg.format=ssh) checks with ssh-keygen. Everything goes through OpenSSL's
 * libcrypto; the key's bytes are wiped when freed.
 */
#ifndef FARM_BASE_SSHSIG_H
#define FARM_BASE_SSHSIG_H

#include <stddef.h>

typedef struct sshsig_key sshsig_key;

/* Parse an OpenSSH private key. Returns 0 with *out set (free with
 * sshsig_key_free()), FARM_EINVALID (not an OpenSSH private key, malformed,
 * or encrypted: the message says how to remove the passphrase),
 * FARM_EUNSUPPORTED (a key type other than ssh-ed25519 and ssh-rsa) or
 * FARM_ENOMEM. The message never holds key material. */
int sshsig_key_parse(sshsig_key **out, const char *text);

/* The key's type ("ssh-ed25519", "ssh-rsa"). */
const char *sshsig_key_type(const sshsig_key *k);

/* The public key as one authorized_keys line ("ssh-ed25519 AAAA..."), a
 * heap string the caller frees, or NULL on ENOMEM. */
char *sshsig_key_public(const sshsig_key *k);

/* Sign n bytes at msg under namespace ns ("git" for commits): *out is the
 * armored signature (lines of at most 70 characters, ending in a newline),
 * a heap string the caller frees. Returns 0, FARM_EINVALID (empty
 * namespace) or FARM_ERROR (the signature failed). */
int sshsig_sign(char **out, const sshsig_key *k, const char *ns, const void *msg, size_t n);

void sshsig_key_free(sshsig_key *k);

#endif
