//go:build windows

package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"unsafe"

	"golang.org/x/sys/windows"
)

// CreateExcl creates a new file at path for writing; it fails with
// fs.ErrExist if path exists. A private file (perm without group or other
// bits, such as 0600) is created with a protected DACL that lets only the
// user guardctl runs as, Administrators and SYSTEM in: Windows ignores file
// modes, and a new file would inherit its directory's ACL, which outside a
// user's profile (a USB stick, C:\ProgramData, D:\backup) often lets every
// user read it. The DACL is there from the moment the file exists, so no
// other user can open it in between. Other files inherit as usual.
func CreateExcl(path string, perm fs.FileMode) (*os.File, error) {
	fail := func(err error) (*os.File, error) { return nil, &fs.PathError{Op: "create", Path: path, Err: err} }
	var sa *windows.SecurityAttributes
	if perm&0o077 == 0 {
		var err error
		if sa, err = privateAttributes(""); err != nil {
			return fail(err)
		}
	}
	name, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return fail(err)
	}
	h, err := windows.CreateFile(name, windows.GENERIC_READ|windows.GENERIC_WRITE,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE, sa,
		windows.CREATE_NEW, windows.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		if errors.Is(err, windows.ERROR_FILE_EXISTS) || errors.Is(err, windows.ERROR_ALREADY_EXISTS) {
			err = fs.ErrExist
		}
		return fail(err)
	}
	return os.NewFile(uintptr(h), path), nil
}

// mkdirPrivate creates the directory dir, as 0700 does elsewhere: with a
// protected DACL for the user guardctl runs as, Administrators and SYSTEM,
// inherited by everything created in it.
func mkdirPrivate(dir string) error {
	sa, err := privateAttributes("OICI")
	if err != nil {
		return &fs.PathError{Op: "mkdir", Path: dir, Err: err}
	}
	name, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return &fs.PathError{Op: "mkdir", Path: dir, Err: err}
	}
	if err := windows.CreateDirectory(name, sa); err != nil {
		if errors.Is(err, windows.ERROR_ALREADY_EXISTS) {
			err = fs.ErrExist
		}
		return &fs.PathError{Op: "mkdir", Path: dir, Err: err}
	}
	return nil
}

// privateAttributes are security attributes with a protected DACL (no
// inherited entries) giving full control to the user guardctl runs as,
// Administrators (BA) and SYSTEM (SY) only; inherit is "" for a file,
// "OICI" for a directory whose contents inherit it.
func privateAttributes(inherit string) (*windows.SecurityAttributes, error) {
	user, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return nil, err
	}
	sd, err := windows.SecurityDescriptorFromString(privateSDDL(user.User.Sid.String(), inherit))
	if err != nil {
		return nil, err
	}
	sa := &windows.SecurityAttributes{SecurityDescriptor: sd}
	sa.Length = uint32(unsafe.Sizeof(*sa))
	return sa, nil
}

func privateSDDL(sid, inherit string) string {
	return "D:P(A;" + inherit + ";FA;;;" + sid + ")(A;" + inherit + ";FA;;;BA)(A;" + inherit + ";FA;;;SY)"
}
