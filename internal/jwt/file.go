package jwt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"wxlogin/internal/durable"
)

// FileName is the key file's name in the data directory.
const FileName = "jwt-keys.json"

// The format the key file names.
const (
	fileFormat  = "wxlogin-jwt-keys"
	fileVersion = 1
)

// File is a Store in one file, for the one wxlogin that owns its data
// directory: a JSON document of the records by slot, with the SHA-256 of
// their bytes as written, so that any damage is seen, replaced whole
// (durable.WriteFile) at each change, 0600, as it holds private keys.
type File struct {
	path string
	mu   sync.Mutex // guards the file
}

// NewFile keeps the keys in the file at path.
func NewFile(path string) *File { return &File{path: path} }

// fileDoc is the key file.
type fileDoc struct {
	Format  string          `json:"format"`
	Version int             `json:"version"`
	SHA256  string          `json:"sha256"` // of Keys, as written
	Keys    json.RawMessage `json:"keys"`   // the records by slot
}

// Keys is every record in the file.
func (f *File) Keys(ctx context.Context) (map[string][]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.read()
}

// Add writes record under slot unless the file holds one there already.
func (f *File) Add(ctx context.Context, slot string, record []byte) (map[string][]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	kept, err := f.read()
	if err != nil {
		return nil, err
	}
	if _, ok := kept[slot]; ok {
		return kept, nil
	}
	kept[slot] = record
	return kept, f.write(kept)
}

// Drop removes the records of slots from the file.
func (f *File) Drop(ctx context.Context, slots []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	kept, err := f.read()
	if err != nil {
		return err
	}
	for _, s := range slots {
		delete(kept, s)
	}
	return f.write(kept)
}

// read is the records in the file; none if there is no file yet. A file
// that is not the key file, whole, is refused: its errors name the file,
// never what it holds.
func (f *File) read() (map[string][]byte, error) {
	data, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, err
	}
	damaged := func(why string) error { return fmt.Errorf("%s: %w: %s", f.path, ErrDamaged, why) }
	var doc fileDoc
	if err := json.Unmarshal(data, &doc); err != nil || doc.Format != fileFormat {
		return nil, damaged("not a wxlogin key file")
	}
	if doc.Version != fileVersion {
		return nil, fmt.Errorf("%s: key file version %d, not %d", f.path, doc.Version, fileVersion)
	}
	if sum := sha256.Sum256(doc.Keys); hex.EncodeToString(sum[:]) != doc.SHA256 {
		return nil, damaged("its keys are not the bytes written")
	}
	var records map[string]json.RawMessage
	if err := json.Unmarshal(doc.Keys, &records); err != nil {
		return nil, damaged("its keys are not JSON records")
	}
	kept := make(map[string][]byte, len(records))
	for slot, r := range records {
		kept[slot] = r
	}
	return kept, nil
}

// write replaces the file with one of kept.
func (f *File) write(kept map[string][]byte) error {
	records := make(map[string]json.RawMessage, len(kept))
	for slot, r := range kept {
		records[slot] = r
	}
	keys, err := json.Marshal(records)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(keys)
	data, err := json.Marshal(fileDoc{Format: fileFormat, Version: fileVersion, SHA256: hex.EncodeToString(sum[:]), Keys: keys})
	if err != nil {
		return err
	}
	return durable.WriteFile(f.path, func(tmp *os.File) error {
		_, err := tmp.Write(append(data, '\n'))
		return err
	})
}
