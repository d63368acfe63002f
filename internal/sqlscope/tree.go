package sqlscope

//go:generate go run gen_tree.go

import (
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// parseTree parses sql with the PostgreSQL parser (libpg_query) and returns
// its parse tree.
//
// libpg_query gives the tree as protobuf or as JSON. Its protobuf output is
// slow (protobuf-c sizes each nested message again at every level: about
// 120 µs of the 150 for a 200-character SELECT); its JSON output, the
// protobuf JSON mapping of the same tree, is several times faster. So the
// JSON is read here straight into the same protobuf types, by functions
// generated from pg_query.pb.go (tree_gen.go). Anything they do not expect
// — an unknown key, a malformed value, a node that only analysed trees
// have — makes parseTree fall back to the protobuf output: the tree the
// analysis sees is always the parser's. FuzzTreeMatchesProtobuf and
// TestTreeMatchesProtobuf check that both paths give equal trees.
func parseTree(sql string) (*pg_query.ParseResult, error) {
	j, err := pg_query.ParseToJSON(sql)
	if err != nil {
		return nil, err
	}
	tree := &pg_query.ParseResult{}
	if err := decodeJSONTree(j, tree); err == nil {
		return tree, nil
	}
	return pg_query.Parse(sql)
}

var errTree = errors.New("unexpected parse tree JSON")

// maxTreeDepth bounds the decoder's recursion; the parser's own stack
// limit keeps real trees far below it.
const maxTreeDepth = 10000

func decodeJSONTree(j string, m *pg_query.ParseResult) error {
	d := &treeDecoder{s: j}
	if err := d.decParseResult(m); err != nil {
		return err
	}
	d.ws()
	if d.i != len(d.s) {
		return errTree
	}
	return nil
}

// treeDecoder reads the JSON that libpg_query writes. The generated
// decoders drive it with open/key/close for objects and elem for arrays
// (no closures: they made the generated file take minutes to compile).
type treeDecoder struct {
	s     string
	i     int
	depth int
	first bool // just after '{': the next key needs no comma
}

// open reads the '{' of an object.
func (d *treeDecoder) open() error {
	d.depth++
	if d.depth > maxTreeDepth {
		return errTree
	}
	if err := d.expect('{'); err != nil {
		return err
	}
	d.first = true
	return nil
}

func (d *treeDecoder) close() { d.depth-- }

// key reads the next key of the object and its colon; more is false at
// the object's end.
func (d *treeDecoder) key() (key string, more bool, err error) {
	if d.first {
		d.first = false
		if d.peek() == '}' {
			d.i++
			return "", false, nil
		}
	} else {
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			return "", false, nil
		default:
			return "", false, errTree
		}
	}
	if key, err = d.str(); err != nil {
		return "", false, err
	}
	if err := d.expect(':'); err != nil {
		return "", false, err
	}
	return key, true, nil
}

// null skips a null value (the field keeps its zero value).
func (d *treeDecoder) null() bool { return d.literal("null") }

// elem steps through an array: true when an element follows (after '['
// or ','), false at ']' or on an error (then set in *err). Elements of
// parse-tree arrays are objects or strings, never arrays, so a '[' is
// always the array's own start.
func (d *treeDecoder) elem(err *error) bool {
	switch d.peek() {
	case '[':
		d.i++
		if d.peek() == ']' {
			d.i++
			return false
		}
		return true
	case ',':
		d.i++
		return true
	case ']':
		d.i++
		return false
	}
	*err = errTree
	return false
}

func (d *treeDecoder) ws() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *treeDecoder) peek() byte {
	d.ws()
	if d.i < len(d.s) {
		return d.s[d.i]
	}
	return 0
}

func (d *treeDecoder) expect(c byte) error {
	if d.peek() != c {
		return errTree
	}
	d.i++
	return nil
}

func (d *treeDecoder) literal(word string) bool {
	d.ws()
	if len(d.s)-d.i >= len(word) && d.s[d.i:d.i+len(word)] == word {
		d.i += len(word)
		return true
	}
	return false
}

func (d *treeDecoder) bool() (bool, error) {
	switch {
	case d.literal("true"):
		return true, nil
	case d.literal("false"):
		return false, nil
	}
	return false, errTree
}

func (d *treeDecoder) enum(values map[string]int32) (int32, error) {
	if d.peek() != '"' {
		n, err := d.int(32)
		return int32(n), err
	}
	name, err := d.str()
	if err != nil {
		return 0, err
	}
	v, ok := values[name]
	if !ok {
		return 0, errTree
	}
	return v, nil
}

// number returns the text of a JSON number, or of one in quotes (the
// protobuf JSON mapping quotes 64-bit integers).
func (d *treeDecoder) number() (string, error) {
	if d.peek() == '"' {
		return d.str()
	}
	start := d.i
	for d.i < len(d.s) && (d.s[d.i] == '-' || d.s[d.i] >= '0' && d.s[d.i] <= '9') {
		d.i++
	}
	if d.i == start {
		return "", errTree
	}
	return d.s[start:d.i], nil
}

func (d *treeDecoder) int(bits int) (int64, error) {
	t, err := d.number()
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(t, 10, bits)
	if err != nil {
		return 0, errTree
	}
	return n, nil
}

func (d *treeDecoder) uint(bits int) (uint64, error) {
	t, err := d.number()
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(t, 10, bits)
	if err != nil {
		return 0, errTree
	}
	return n, nil
}

// str reads a JSON string.
func (d *treeDecoder) str() (string, error) {
	if err := d.expect('"'); err != nil {
		return "", err
	}
	start := d.i
	for d.i < len(d.s) {
		c := d.s[d.i]
		switch {
		case c == '"':
			s := d.s[start:d.i]
			d.i++
			return s, nil
		case c == '\\':
			return d.escaped(start)
		case c < 0x20:
			return "", errTree
		}
		d.i++
	}
	return "", errTree
}

// escaped finishes a string that holds escapes.
func (d *treeDecoder) escaped(start int) (string, error) {
	b := []byte(d.s[start:d.i])
	for d.i < len(d.s) {
		c := d.s[d.i]
		switch {
		case c == '"':
			d.i++
			return string(b), nil
		case c < 0x20:
			return "", errTree
		case c != '\\':
			b = append(b, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.s) {
			return "", errTree
		}
		e := d.s[d.i+1]
		d.i += 2
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return "", errTree
			}
			if utf16.IsSurrogate(r) {
				if len(d.s)-d.i < 2 || d.s[d.i:d.i+2] != `\u` {
					return "", errTree
				}
				d.i += 2
				r2, ok := d.hex4()
				if !ok {
					return "", errTree
				}
				if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
					return "", errTree
				}
			}
			b = utf8.AppendRune(b, r)
		default:
			return "", errTree
		}
	}
	return "", errTree
}

func (d *treeDecoder) hex4() (rune, bool) {
	if len(d.s)-d.i < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(d.s[d.i:d.i+4], 16, 16)
	if err != nil {
		return 0, false
	}
	d.i += 4
	return rune(n), true
}
