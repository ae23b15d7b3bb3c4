package iampolicy

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestOneOrMany(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		ok   bool
	}{
		{`"sts:AssumeRole"`, []string{"sts:AssumeRole"}, true},
		{`["a","b"]`, []string{"a", "b"}, true},
		{` []`, []string{}, true},
		{`null`, nil, true},
		{`5`, nil, false},
		{`[5]`, nil, false},
		{`{"a":1}`, nil, false},
	} {
		var got OneOrMany[string]
		err := json.Unmarshal([]byte(c.in), &got)
		if (err == nil) != c.ok || (c.ok && !slices.Equal(got, c.want)) {
			t.Errorf("%s: %v, %v", c.in, got, err)
		}
	}
	type s struct{ Sid string }
	var one OneOrMany[s]
	if err := json.Unmarshal([]byte(`{"Sid":"x"}`), &one); err != nil || len(one) != 1 || one[0].Sid != "x" {
		t.Errorf("one statement: %v, %v", one, err)
	}
}
