package fibtest

import "testing"

func TestInternetTableHasTheDocumentedSize(t *testing.T) {
	ps, err := InternetTable()
	if err != nil {
		t.Fatal(err)
	}
	v4 := 0
	for _, p := range ps {
		if p.Addr().Is4() {
			v4++
		}
		if p != p.Masked() {
			t.Fatalf("%s is not masked", p)
		}
	}
	if v4 < 900_000 || len(ps)-v4 < 160_000 {
		t.Errorf("table has %d IPv4 and %d IPv6 prefixes", v4, len(ps)-v4)
	}
}
