package kernel

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzDecodeRoute is seeded from the recorded kernel messages in
// testdata/fuzz/FuzzDecodeRoute (written by TestRecord). DecodeRoute must
// never panic, and whatever it accepts must survive EncodeRoute and decode
// to the same RouteMessage; encoding that again must give the same bytes.
func FuzzDecodeRoute(f *testing.F) {
	f.Fuzz(func(t *testing.T, msg []byte) {
		m, err := DecodeRoute(msg)
		if err != nil {
			return
		}
		enc := EncodeRoute(m)
		back, err := DecodeRoute(enc)
		if err != nil {
			t.Fatalf("decoding the encoding of %+v: %v\nencoded %x\ninput   %x", m, err, enc, msg)
		}
		if !reflect.DeepEqual(back, m) {
			t.Fatalf("round trip changed the message\n got %+v\nwant %+v\ninput %x", back, m, msg)
		}
		if again := EncodeRoute(back); !bytes.Equal(again, enc) {
			t.Fatalf("encoding is not stable:\n%x\n%x", enc, again)
		}
	})
}

// FuzzDecode throws arbitrary bytes at the dispatcher (route, link and
// address decoders); it must never panic. Seeded from every recorded
// notification in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, msg []byte) {
		v, err := Decode(msg)
		if (v == nil) == (err == nil) {
			t.Fatalf("Decode returned %v and %v", v, err)
		}
		_, _ = splitMessages(nil, msg)
	})
}
