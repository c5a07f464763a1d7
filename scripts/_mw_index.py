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

# ---- create-argument fields (legacy @accepts Dict / pydantic *Create models)
def show(ref, path):
    r = subprocess.run(["git","-C",D,"show",f"{ref}:{path}"],capture_output=True,text=True)
    return r.stdout if r.returncode==0 else None
def legacy_fields(ref, path, schema):
    t = ast.parse(show(ref, path))
    for node in ast.walk(t):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Dict" and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == schema:
            out = []
            for a in node.args[1:]:
                if isinstance(a, ast.Call) and a.args and isinstance(a.args[0], ast.Constant):
                    out.append(a.args[0].value)
                elif isinstance(a, ast.Call) and isinstance(a.func, ast.Name) and a.func.id == "Inheritable":
                    inner = a.args[0]
                    out.append(inner.args[0].value)
            return out
    return None
def pyd_fields(ref, path, cls):
    src = show(ref, path)
    if src is None: return None
    t = ast.parse(src)
    classes = {c.name: c for c in t.body if isinstance(c, ast.ClassDef)}
    def fields(name):
        c = classes.get(name)
        if c is None: return {}
        f = {}
        for b in c.bases:
            bn = ast.unparse(b)
            f.update(fields(bn))
        for st in c.body:
            if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name):
                ann = ast.unparse(st.annotation)
                if "Excluded" in ann: f.pop(st.target.id, None)
                else: f[st.target.id] = ann
        return f
    return sorted(fields(cls))

P = 'src/middlewared/middlewared/'
LEGACY = {  # method -> (file per era, schema name)
    "iscsi.extent.create": ("extents", "iscsi_extent_create", "iscsi_extent", "IscsiExtentCreate"),
    "iscsi.target.create": ("targets", "iscsi_target_create", "iscsi_target", "IscsiTargetCreate"),
    "iscsi.initiator.create": ("initiator", "iscsi_initiator_create", "iscsi_initiator", "IscsiInitiatorCreate"),
    "iscsi.auth.create": ("auth", "iscsi_auth_create", "iscsi_auth", "IscsiAuthCreate"),
    "iscsi.portal.create": ("portal", "iscsiportal_create", "iscsi_portal", "IscsiPortalCreate"),
    "iscsi.targetextent.create": ("target_to_extent", "iscsi_targetextent_create", "iscsi_target_to_extent",
                                  "IscsiTargetToExtentCreate"),
}
APIDIR = {"TS-25.04.2.4": "v25_04_2", "TS-25.10.1": "v25_10_1", "TS-26.0.0-BETA.3": "v26_0_0"}

def create_fields(ref, method):
    f, sch, mod, cls = LEGACY[method]
    if ref in APIDIR:
        return pyd_fields(ref, P + f"api/{APIDIR[ref]}/{mod}.py", cls)
    if ref.startswith("TN-"):
        r = legacy_fields(ref, P + "plugins/iscsi.py", sch)
        if r is None and sch == "iscsiportal_create":
            r = legacy_fields(ref, P + "plugins/iscsi.py", "iscsi_portal_create")
        return r
    r = legacy_fields(ref, P + f"plugins/iscsi_/{f}.py", sch)
    if r is None and sch == "iscsiportal_create":
        r = legacy_fields(ref, P + f"plugins/iscsi_/{f}.py", "iscsi_portal_create")
    return r
LEGACY["pool.dataset.create"] = ("pool", "pool_dataset_create", None, None)


def dataset_create_fields(ref):
    if ref.startswith("TN-"):
        return legacy_fields(ref, P + "plugins/pool.py", "pool_dataset_create")
    if ref in ("TS-24.10.2.2", "TS-25.04.2.4"):
        return legacy_fields(ref, P + "plugins/pool_/dataset.py", "pool_dataset_create")
    d = APIDIR.get(ref)
    if d is None:
        return None
    # 25.10+: data is PoolDatasetCreateFilesystem | PoolDatasetCreateVolume: the fields either accepts
    path = P + f"api/{d}/pool_dataset.py"
    return sorted(set(pyd_fields(ref, path, "PoolDatasetCreateFilesystem"))
                  | set(pyd_fields(ref, path, "PoolDatasetCreateVolume")))


# ---- validation messages the simulator emits -> where the same text is in the middleware, per ref
def sim_messages(methods_py: str) -> dict[str, int]:
    t = ast.parse(methods_py)
    msgs: dict[str, int] = {}

    def chunks(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.JoinedStr):
            return [v.value for v in node.values if isinstance(v, ast.Constant)]
        if isinstance(node, ast.IfExp):
            return chunks(node.body) + chunks(node.orelse)
        if isinstance(node, ast.BinOp):
            return chunks(node.left) + chunks(node.right)
        return []

    for n in ast.walk(t):
        if isinstance(n, ast.Call):
            f = ast.unparse(n.func)
            if f.endswith("verrors.add") and len(n.args) > 1:
                m = n.args[1]
            elif f in ("ValidationError", "CallError") and n.args:
                m = n.args[1] if f == "ValidationError" and len(n.args) > 1 else n.args[0]
            else:
                continue
            for c in chunks(m):
                c = c.strip(" :.'\"\n")
                if len(c) >= 12 and "\n" not in c:
                    msgs.setdefault(c, n.lineno)
    return msgs


def grep_message(ref: str, text: str):
    r = subprocess.run(["git", "-C", D, "grep", "-n", "-F", "-m1", text, ref, "--",
                        "src/middlewared/middlewared/plugins", "src/middlewared/middlewared/api",
                        "src/middlewared/middlewared/service", "src/middlewared/middlewared/schema.py",
                        "src/middlewared/middlewared/schema", "src/middlewared/middlewared/validators.py",
                        "src/middlewared/middlewared/service_exception.py"],
                       capture_output=True, text=True).stdout.splitlines()
    if not r:
        return None
    _, path, line = r[0].split(":", 3)[:3]
    return (path, int(line))
