package embeddedstore

import (
	"io"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// privateFS is the disk as pebble sees it, but every file it makes is
// readable by the service's user only (0600) and every directory 0700:
// readings are the fleet's data, not the machine's other users'.
type privateFS struct{ vfs.FS }

func (fs privateFS) private(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return f, err
	}
	if err := os.Chmod(name, 0o600); err != nil {
		_ = f.Close() // the chmod error says more
		return nil, err
	}
	return f, nil
}

func (fs privateFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.private(name, f, err)
}

func (fs privateFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.private(name, f, err)
}

func (fs privateFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.private(newname, f, err)
}

func (fs privateFS) MkdirAll(dir string, _ os.FileMode) error { return fs.FS.MkdirAll(dir, 0o700) }

func (fs privateFS) Lock(name string) (io.Closer, error) {
	c, err := fs.FS.Lock(name)
	if err == nil {
		err = os.Chmod(name, 0o600)
		if err != nil {
			_ = c.Close() // the chmod error says more
			return nil, err
		}
	}
	return c, err
}
