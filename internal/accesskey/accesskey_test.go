package accesskey

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	good := "keys:\n- accessKeyId: AKIAPODIDSTOCKAGENT1\n  secretAccessKey: 0123456789abcdefghijABCD\n  name: stock-agent\n  node: node-a\n"
	keys, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].Principal.(Entry).Node != "node-a" || keys[0].SecretAccessKey != "0123456789abcdefghijABCD" {
		t.Fatalf("keys = %+v", keys)
	}
	for _, c := range []struct{ doc, want string }{
		{"keys:\n- accessKeyId: short\n  secretAccessKey: 0123456789abcdefghijABCD\n  name: a\n", "accessKeyId must be"},
		{"keys:\n- accessKeyId: AKIAPODIDSTOCKAGENT1\n  secretAccessKey: short\n  name: a\n", "at least 20"},
		{"keys:\n- accessKeyId: AKIAPODIDSTOCKAGENT1\n  secretAccessKey: 0123456789abcdefghijABCD\n", "name is required"},
		{good + "- accessKeyId: AKIAPODIDSTOCKAGENT1\n  secretAccessKey: 0123456789abcdefghijABCD\n  name: b\n", "appears twice"},
		{"keys:\n- accessKeyId: AKIAPODIDSTOCKAGENT1\n  secret: x\n", "unknown field"},
	} {
		if _, err := Parse([]byte(c.doc)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error with %q", c.doc, err, c.want)
		}
	}
}
