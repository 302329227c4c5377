import zipfile, hashlib, base64, sys, csv, io
src = '/work/wheels/ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl'
dst = sys.argv[1]
DROP = ('ray/jars/', 'ray/dashboard/client/build/', 'ray/rllib/', 'ray/serve/', 'ray/llm/',
        'ray/tune/examples/', 'ray/train/examples/', 'ray/data/llm.py')
STUB = {  # the dashboard head refuses to start without client/build (and client/build/static) on Linux
    'ray/dashboard/client/build/index.html': b'<!doctype html><title>Ray</title><p>Ray dashboard frontend left out of this slim install; the HTTP/state API works.</p>\n',
    'ray/dashboard/client/build/favicon.ico': b'',
    'ray/dashboard/client/build/static/README.txt': b'frontend assets left out of this slim install\n',
}
def h(data):
    return 'sha256=' + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()
zin = zipfile.ZipFile(src)
rec_name = next(n for n in zin.namelist() if n.endswith('.dist-info/RECORD'))
zout = zipfile.ZipFile(dst, 'w', zipfile.ZIP_DEFLATED, compresslevel=9)
rows = []
dropped = 0
for info in zin.infolist():
    n = info.filename
    if n == rec_name:
        continue
    if n.startswith(DROP):
        dropped += info.file_size
        continue
    data = zin.read(n)
    zi = zipfile.ZipInfo(n, date_time=info.date_time)
    zi.external_attr = info.external_attr
    zi.compress_type = zipfile.ZIP_DEFLATED
    zout.writestr(zi, data, compresslevel=9)
    rows.append((n, h(data), str(len(data))))
for n, data in STUB.items():
    zi = zipfile.ZipInfo(n, date_time=(2020, 1, 1, 0, 0, 0))
    zi.external_attr = 0o644 << 16
    zout.writestr(zi, data, zipfile.ZIP_DEFLATED, 9)
    rows.append((n, h(data), str(len(data))))
buf = io.StringIO()
w = csv.writer(buf, lineterminator='\n')
for r in rows: w.writerow(r)
w.writerow((rec_name, '', ''))
zout.writestr(rec_name, buf.getvalue(), zipfile.ZIP_DEFLATED, 9)
zout.close()
print('dropped uncompressed MB', dropped / 1e6)
