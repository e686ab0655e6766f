package policyfile

import (
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// TestTheExamplePolicyParses keeps deploy/examples/policy.yaml in step with
// the file format; that the daemon accepts it is checked against a real
// server in TestPolicySetGetAndValidateWithAFile.
func TestTheExamplePolicyParses(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "examples", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	s := p.GetScopes()
	if len(s) != 3 || s[0].GetLevel() != pb.Level_LEVEL_OFFLOAD || s[1].GetPendingTimeout().AsDuration().String() != "30s" ||
		s[2].GetFamily() != pb.Family_FAMILY_IPV6 || !s[2].GetFailOpen() || s[0].GetHoldDown().GetMax().AsDuration().String() != "2m0s" ||
		s[0].GetRetry().GetMax().AsDuration().String() != "10m0s" || s[1].GetRetry() != nil {
		t.Errorf("parsed %v", p)
	}
}

func TestPolicyFilesRoundTrip(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "examples", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Format(p)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out)
	if err != nil {
		t.Fatalf("%v in\n%s", err, out)
	}
	if !proto.Equal(p, back) {
		t.Errorf("round trip changed the policy:\n%v\n%v", p, back)
	}
	// Proto enum names are accepted too.
	q, err := Parse([]byte("scopes:\n  - name: a\n    level: LEVEL_FIB\n    ecmp: ANY\n"))
	if err != nil || q.GetScopes()[0].GetLevel() != pb.Level_LEVEL_FIB || q.GetScopes()[0].GetEcmp() != pb.EcmpMode_ECMP_MODE_ANY {
		t.Errorf("got %v, %v", q, err)
	}
}
