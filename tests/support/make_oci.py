#!/usr/bin/env python3
"""make_oci.py - build a small OCI image layout from Debian's busybox-static.

    make_oci.py DIR [--tag TAG] [--busybox PATH] [--archive FILE] [--bad KIND]

Layer 1: /bin/busybox with symlinks (sh, ls, cat, ...), /etc/hello.txt,
/etc/gone.txt, /opt/keep/{a,b}, a setuid /bin/su (a copy of busybox), a
character device /dev/null-ish node and a hardlink /bin/bb2 -> bin/busybox.
A relative /lib -> usr/lib link and a path over 100 bytes.
Layer 2: a whiteout removing /etc/gone.txt, an opaque /opt/keep holding only
c, /etc/layer2.txt, and lib/through-link.txt (written through the link). Written with tarfile + hashlib + json only, as
`skopeo copy ... oci:DIR:TAG` lays it out (index.json with the tag as its
org.opencontainers.image.ref.name annotation, blobs/sha256/<hex>).

--archive FILE also writes FILE, an oci-archive (a tar of the layout).
--bad KIND makes a broken image: missing-blob (layer 2's blob deleted),
wrong-digest (layer 2's blob changed after hashing), dotdot (an entry
../escape.txt), abs-path (an entry /abs.txt), abs-symlink (etc/evil ->
/tmp/<name> then a file etc/evil/pwned through it), hardlink-out (a hardlink
to ../../etc/passwd), dangling (a file through a link to nothing).
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def tar_layer(entries):
    """entries: list of (TarInfo, bytes or None). Returns gzip bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for info, data in entries:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return gzip.compress(raw.getvalue(), mtime=0)


def entry(name, kind=tarfile.REGTYPE, data=None, mode=0o644, link=""):
    i = tarfile.TarInfo(name)
    i.type = kind
    i.mode = mode
    i.mtime = 1700000000
    i.uid = i.gid = 0
    i.linkname = link
    if data is not None:
        i.size = len(data)
    return (i, data)


def layer1(busybox):
    bb = open(busybox, "rb").read()
    e = [
        entry("bin/", tarfile.DIRTYPE, mode=0o755),
        entry("bin/busybox", data=bb, mode=0o755),
        entry("bin/su", data=bb, mode=0o4755),
        entry("bin/bb2", tarfile.LNKTYPE, link="bin/busybox"),
        entry("dev/", tarfile.DIRTYPE, mode=0o755),
        entry("dev/null", tarfile.CHRTYPE, mode=0o666),
        entry("etc/", tarfile.DIRTYPE, mode=0o755),
        entry("etc/hello.txt", data=b"hello from the image\n"),
        entry("etc/caf\u00e9-\u65e5\u672c.txt", data=b"a name that is not ASCII\n"),
        entry("etc/gone.txt", data=b"removed by layer 2\n"),
        entry("opt/keep/a", data=b"a\n"),
        entry("opt/keep/b", data=b"b\n"),
        entry("usr/", tarfile.DIRTYPE, mode=0o755),
        entry("usr/bin/", tarfile.DIRTYPE, mode=0o755),
        entry("usr/lib/", tarfile.DIRTYPE, mode=0o755),
        entry("lib", tarfile.SYMTYPE, link="usr/lib", mode=0o777),  # merged /usr, relative
        entry("usr/share/" + "long-directory-name/" * 8 + "file.txt", data=b"a long path\n"),
    ]
    for tool in ("sh", "[", "ls", "cat", "echo", "test", "id", "env", "true", "false", "mkdir",
                 "touch", "rm", "sleep", "grep", "head", "wc", "printf", "stat", "readlink",
                 "tr", "sed", "dirname", "basename", "pwd", "uname", "kill", "ps", "find",
                 "chmod", "cp", "mv", "date", "nc", "wget", "timeout", "seq", "yes", "dd"):
        e.append(entry("bin/" + tool, tarfile.SYMTYPE, link="busybox", mode=0o777))
    return tar_layer(e)


def layer2(bad):
    e = [
        entry("etc/.wh.gone.txt", data=b""),
        entry("opt/keep/.wh..wh..opq", data=b""),
        entry("opt/keep/c", data=b"c\n"),
        entry("opt/deep/x/y/z", data=b"z\n"),
        entry("opt/.wh..wh..opq", data=b""),
        entry("etc/layer2.txt", data=b"second layer\n"),
        entry("lib/through-link.txt", data=b"written through lib -> usr/lib\n"),
    ]
    if bad == "dotdot":
        e.append(entry("../escape.txt", data=b"out\n"))
    elif bad == "abs-path":
        e.append(entry("/abs.txt", data=b"out\n"))
    elif bad == "abs-symlink":
        target = "/tmp/farm-image-pwned-%d" % os.getpid()
        e.append(entry("etc/evil", tarfile.SYMTYPE, link=target, mode=0o777))
        e.append(entry("etc/evil/pwned", data=b"out\n"))
    elif bad == "dangling":
        e.append(entry("etc/dangle", tarfile.SYMTYPE, link="missing/dir", mode=0o777))
        e.append(entry("etc/dangle/x", data=b"x\n"))
    elif bad == "hardlink-out":
        e.append(entry("etc/passwd-link", tarfile.LNKTYPE, link="../../etc/passwd"))
    return tar_layer(e)


def put_blob(d, data):
    h = hashlib.sha256(data).hexdigest()
    with open(os.path.join(d, "blobs", "sha256", h), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + h, "size": len(data)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--tag", default="1")
    ap.add_argument("--busybox", default="/bin/busybox")
    ap.add_argument("--archive")
    ap.add_argument("--bad", default="")
    a = ap.parse_args()
    os.makedirs(os.path.join(a.dir, "blobs", "sha256"), exist_ok=True)
    l1 = layer1(a.busybox)
    l2 = layer2(a.bad)
    d1 = put_blob(a.dir, l1)
    d2 = put_blob(a.dir, l2)
    diff_ids = ["sha256:" + hashlib.sha256(gzip.decompress(b)).hexdigest() for b in (l1, l2)]
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }).encode()
    dc = put_blob(a.dir, config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(dc, mediaType="application/vnd.oci.image.config.v1+json"),
        "layers": [dict(d1, mediaType=MT_LAYER), dict(d2, mediaType=MT_LAYER)],
    }).encode()
    dm = put_blob(a.dir, manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [dict(dm, mediaType="application/vnd.oci.image.manifest.v1+json",
                           annotations={"org.opencontainers.image.ref.name": a.tag})],
    }
    with open(os.path.join(a.dir, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(a.dir, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    blob2 = os.path.join(a.dir, "blobs", "sha256", d2["digest"][7:])
    if a.bad == "missing-blob":
        os.unlink(blob2)
    elif a.bad == "wrong-digest":
        data = bytearray(open(blob2, "rb").read())
        data[len(data) // 2] ^= 0xff
        open(blob2, "wb").write(bytes(data))
    if a.archive:
        with tarfile.open(a.archive, "w") as t:
            for name in ("oci-layout", "index.json", "blobs"):
                t.add(os.path.join(a.dir, name), arcname=name)
    print(dm["digest"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
