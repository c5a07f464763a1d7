"""Index every public/private method of middleware at a git ref: {method: (path, line, private)}"""
import ast, subprocess, sys, json, re
D = "/work/.mirror/truenas+middleware/repo"
BASE = "src/middlewared/middlewared/"

def files(ref):
    out = subprocess.run(["git", "-C", D, "ls-tree", "-r", "--name-only", ref, "--", BASE + "plugins", BASE + "main.py", BASE + "service", BASE + "service.py"], capture_output=True, text=True, check=True).stdout.split()
    return [f for f in out if f.endswith(".py")]

def blobs(ref, paths):
    p = subprocess.Popen(["git", "-C", D, "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    inp = "".join(f"{ref}:{x}\n" for x in paths).encode()
    out, _ = p.communicate(inp)
    res = {}; i = 0
    for x in paths:
        nl = out.index(b"\n", i); hdr = out[i:nl].split(); size = int(hdr[2])
        res[x] = out[nl+1:nl+1+size].decode("utf-8", "replace"); i = nl + 1 + size + 1
    return res

CRUD = {"do_create": "create", "do_update": "update", "do_delete": "delete"}
def ns_of(cls):
    ns = None; private = False; cli_private = False
    for st in cls.body:
        if isinstance(st, ast.ClassDef) and st.name == "Config":
            for a in st.body:
                if isinstance(a, ast.Assign) and isinstance(a.targets[0], ast.Name):
                    n = a.targets[0].id
                    if n == "namespace" and isinstance(a.value, ast.Constant): ns = a.value.value
                    if n == "private" and isinstance(a.value, ast.Constant): private = bool(a.value.value)
    if ns is None:
        name = cls.name
        if name.endswith("Service"): name = name[:-7]
        ns = name.lower()
    return ns, private

def is_service(cls):
    for b in cls.bases:
        s = ast.unparse(b)
        if "Service" in s or "Model" in s and False: return True
    return False

def decos(fn):
    return [ast.unparse(d) for d in fn.decorator_list]

def index(ref):
    fs = files(ref); src = blobs(ref, fs); idx = {}
    for path, text in src.items():
        try: tree = ast.parse(text)
        except SyntaxError as e:
            print("SYNTAX", ref, path, e, file=sys.stderr); continue
        for cls in tree.body:
            if not isinstance(cls, ast.ClassDef) or not is_service(cls): continue
            ns, cpriv = ns_of(cls)
            crud = any("CRUDService" in ast.unparse(b) or "SharingService" in ast.unparse(b) or "TDBWrapCRUDService" in ast.unparse(b) for b in cls.bases)
            config = any("ConfigService" in ast.unparse(b) or "SystemServiceService" in ast.unparse(b) for b in cls.bases)
            names = {}
            for fn in cls.body:
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)): continue
                if fn.name.startswith("_") : continue
                name = CRUD.get(fn.name, fn.name) if crud else ({"do_update": "update"}.get(fn.name, fn.name) if config else fn.name)
                priv = cpriv or any(d == "private" or d.startswith("private") for d in decos(fn))
                if fn.name in CRUD or (config and fn.name == "do_update"):
                    pass
                names[name] = (path, fn.lineno, priv, decos(fn))
            if crud:
                for inh in ("query", "get_instance"):
                    names.setdefault(inh, (path, cls.lineno, cpriv, ["inherited CRUDService"]))
            if config:
                names.setdefault("config", (path, cls.lineno, cpriv, ["inherited ConfigService"]))
            for n, v in names.items():
                key = f"{ns}.{n}"
                if key in idx and not idx[key][2] and v[2]: continue
                idx[key] = v
    return idx

if __name__ == "__main__":
    ref = sys.argv[1]
    idx = index(ref)
    json.dump(idx, open(f"/tmp/i12/idx-{ref.replace('/','_')}.json", "w"), indent=0)
    print(ref, len(idx))
