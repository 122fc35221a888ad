# json_merge.awk: deep-merge the JSON object in file ARGV[2] into the one in ARGV[1], print the result.
# Objects merge key by key (keys the patch does not name are kept, in their order); arrays and
# scalars from the patch replace what was there. A missing or empty file counts as {}.
# Runs on the target with nothing but awk (mawk or gawk); exits 2 on invalid JSON.
function fail(file, why) {
  printf "json_merge: %s: invalid JSON: %s\n", file, why > "/dev/stderr"
  exit 2
}
function slurp(file,    line, text, rc) {
  text = ""
  while ((rc = (getline line < file)) > 0) text = text line "\n"
  close(file)
  return text
}
function tokenize(s, file,    c) {
  while (s != "") {
    if (match(s, /^[ \t\r\n]+/)) { s = substr(s, RLENGTH + 1); continue }
    c = substr(s, 1, 1)
    if (index("{}[]:,", c)) { tok[++ntok] = c; s = substr(s, 2); continue }
    if (c == "\"") {
      if (!match(s, /^"([^"\\]|\\.)*"/)) fail(file, "unterminated string")
    } else if (!match(s, /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?/) && !match(s, /^(true|false|null)/)) {
      fail(file, "unexpected text near " substr(s, 1, 20))
    }
    tok[++ntok] = substr(s, 1, RLENGTH)
    s = substr(s, RLENGTH + 1)
  }
}
function parse_value(file,    id, n, key) {
  if (pos > ntok) fail(file, "unexpected end")
  id = ++nid
  if (tok[pos] == "{" || tok[pos] == "[") {
    kind[id] = (tok[pos] == "{") ? "o" : "a"
    count[id] = 0
    pos++
    if (tok[pos] == (kind[id] == "o" ? "}" : "]")) { pos++; return id }
    while (1) {
      n = ++count[id]
      if (kind[id] == "o") {
        key = tok[pos]
        if (substr(key, 1, 1) != "\"") fail(file, "object key expected, found " key)
        if (tok[++pos] != ":") fail(file, "':' expected after " key)
        pos++
        keyof[id, n] = key
      }
      child[id, n] = parse_value(file)
      if (tok[pos] == ",") { pos++; continue }
      if (tok[pos] == (kind[id] == "o" ? "}" : "]")) { pos++; return id }
      fail(file, "',' or closing bracket expected, found " tok[pos])
    }
  }
  if (index("}]:,", tok[pos])) fail(file, "value expected, found " tok[pos])
  kind[id] = "s"
  value[id] = tok[pos++]
  return id
}
function parse_file(file,    text, id) {
  text = slurp(file)
  if (text ~ /^[ \t\r\n]*$/) text = "{}"
  ntok = 0
  split("", tok)
  tokenize(text, file)
  pos = 1
  id = parse_value(file)
  if (pos <= ntok) fail(file, "trailing text " tok[pos])
  if (kind[id] != "o") fail(file, "top level is not an object")
  return id
}
function merge(a, b,    i, j, found) {
  if (kind[a] != "o" || kind[b] != "o") return b
  for (i = 1; i <= count[b]; i++) {
    found = 0
    for (j = 1; j <= count[a]; j++) if (keyof[a, j] == keyof[b, i]) { found = j; break }
    if (found) child[a, found] = merge(child[a, found], child[b, i])
    else { count[a]++; keyof[a, count[a]] = keyof[b, i]; child[a, count[a]] = child[b, i] }
  }
  return a
}
function render(id, indent,    out, i, inner, opener, closer) {
  if (kind[id] == "s") return value[id]
  opener = (kind[id] == "o") ? "{" : "["
  closer = (kind[id] == "o") ? "}" : "]"
  if (count[id] == 0) return opener closer
  inner = indent "  "
  out = opener "\n"
  for (i = 1; i <= count[id]; i++) {
    out = out inner ((kind[id] == "o") ? keyof[id, i] ": " : "") render(child[id, i], inner)
    out = out ((i < count[id]) ? ",\n" : "\n")
  }
  return out indent closer
}
BEGIN {
  if (ARGC != 3) { print "usage: awk -f json_merge.awk CURRENT PATCH" > "/dev/stderr"; exit 2 }
  base = parse_file(ARGV[1])
  patch = parse_file(ARGV[2])
  print render(merge(base, patch), "")
  exit 0
}
