package fibgatev1

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// TestGeneratedCodeIsCurrent is the cheap drift check CI runs on every
// change: it compiles the .proto files beside it and compares each with the
// descriptor embedded in the generated Go code. A .proto edited without
// `make proto` fails here. (`make proto-check` is the thorough check, with
// lint and format, but building buf takes minutes on a cold machine.)
func TestGeneratedCodeIsCurrent(t *testing.T) {
	files, err := filepath.Glob("*.proto")
	if err != nil || len(files) == 0 {
		t.Fatalf("no .proto files beside the generated code: %v", err)
	}
	root, err := filepath.Abs("../..") // proto/, the import root of fibgate/v1/*.proto
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = "fibgate/v1/" + f
	}
	compiler := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{root}}),
	}
	compiled, err := compiler.Compile(context.Background(), names...)
	if err != nil {
		t.Fatalf("compile .proto files: %v", err)
	}
	for _, fd := range compiled {
		want := strip(protodesc.ToFileDescriptorProto(fd))
		gen, err := protoregistry.GlobalFiles.FindFileByPath(fd.Path())
		if err != nil {
			t.Errorf("%s has no generated Go code: run make proto", fd.Path())
			continue
		}
		got := strip(protodesc.ToFileDescriptorProto(gen))
		if !proto.Equal(got, want) {
			t.Errorf("generated code of %s is stale: run make proto", fd.Path())
		}
	}
	if _, err := os.Stat("../../buf.gen.yaml"); err != nil {
		t.Errorf("buf.gen.yaml missing: %v", err)
	}
}

// strip drops what protoc-gen-go leaves out of the embedded descriptor.
func strip(fd *descriptorpb.FileDescriptorProto) *descriptorpb.FileDescriptorProto {
	fd.SourceCodeInfo = nil
	return fd
}
