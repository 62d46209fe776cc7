package ocipkg

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"path"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ExplainLayout turns oras' "invalid OCI Image Index" into what is wrong:
// the blob index.json lists that is missing, the wrong size, or holds
// other bytes than its digest says. err is returned unchanged when no
// such blob is found.
func ExplainLayout(fsys fs.FS, err error) error {
	if err == nil {
		return nil
	}
	data, rerr := fs.ReadFile(fsys, ocispec.ImageIndexFile)
	if rerr != nil || len(data) > MaxManifestSize {
		return err
	}
	var index ocispec.Index
	if json.Unmarshal(data, &index) != nil {
		return err
	}
	for _, d := range index.Manifests {
		if problem := checkBlob(fsys, d); problem != "" {
			return fmt.Errorf("%s %s listed in %s: %s", kindOf(d), d.Digest, ocispec.ImageIndexFile, problem)
		}
	}
	return err
}

func kindOf(d ocispec.Descriptor) string {
	if d.MediaType == ocispec.MediaTypeImageIndex {
		return "index blob"
	}
	return "manifest blob"
}

// checkBlob says what is wrong with the blob d names, or "".
func checkBlob(fsys fs.FS, d ocispec.Descriptor) string {
	if d.Digest.Validate() != nil {
		return fmt.Sprintf("%q is not a valid digest", d.Digest)
	}
	f, err := fsys.Open(path.Join(ocispec.ImageBlobsDir, d.Digest.Algorithm().String(), d.Digest.Encoded()))
	if err != nil {
		return "the blob is missing"
	}
	defer f.Close()
	dg := d.Digest.Algorithm().Digester()
	n, err := io.Copy(dg.Hash(), io.LimitReader(f, MaxManifestSize+1))
	if err != nil {
		return fmt.Sprintf("cannot read the blob: %v", err)
	}
	if n != d.Size {
		return fmt.Sprintf("the blob is %d bytes, the index says %d", n, d.Size)
	}
	if actual := dg.Digest(); actual != d.Digest {
		return fmt.Sprintf("the blob's content has digest %s: it was altered or corrupted", actual)
	}
	return ""
}
