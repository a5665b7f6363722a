# Reinstalling a Hyper-V host without losing its VMs' virtual TPMs
# (docs/hyperv.md walks through it).
#
# A vTPM VM's key protector is wrapped for the host's guardian, by default
# "UntrustedGuardian": two certificates with private keys in the machine
# store "Shielded VM Local Certificates". On Windows, guardctl works on that
# store itself (--store hyperv, the default there). Export the guardian
# before the reinstall, import it after; nothing else is needed.
#
# Run each step in an elevated PowerShell on its host. guardctl asks for the
# PFX password itself, on each host (twice when exporting): it is never on a
# command line, in a variable of this script, or in a file. For an unattended
# run, give --password-file FILE instead (a file only Administrators can read,
# deleted afterwards), or - to read it from standard input.
$ErrorActionPreference = 'Stop'
$name = 'UntrustedGuardian'
$backup = 'E:\backup'

# --- 1. Before the reinstall, on the old host --------------------------------
# What is there, and is it whole? (Repair first if store check finds problems:
# 'guardctl store check --repair' moves nothing it cannot bring back.)
guardctl guardian list
guardctl store check
# Both certificates with their private keys, as NAME-signing.pfx and
# NAME-encryption.pfx (mode 0600; on Windows readable by you, Administrators
# and SYSTEM only). --legacy writes 3DES/SHA-1, which Windows Server 2016 and
# Windows 10 before 1709 also read.
guardctl guardian export $name --dir $backup
if ($LASTEXITCODE -ne 0) { throw "guardctl could not export $name; do not reinstall yet" }
# Save each VM's key protector, to check on the new host that it can start it.
foreach ($vm in Get-VM) {
    $kp = Get-VMKeyProtector -VMName $vm.Name
    if ($kp.Length -gt 4) {
        [IO.File]::WriteAllBytes("$backup\$($vm.Name).kp", $kp)
    }
}
# Prove the copy opens (and holds the private keys) before the old host is
# gone: import it into a scratch directory store.
guardctl --store "$backup\check" guardian import $name --dir $backup
if ($LASTEXITCODE -ne 0) { throw "the exported pair does not open; export it again" }

# --- 2. After the reinstall, on the new host ---------------------------------
# If Hyper-V already made this host's own UntrustedGuardian (it does when a
# vTPM is first enabled), import moves it to the "guardctl Removed Guardians"
# store with --force ('guardctl guardian restore UntrustedGuardian' brings it
# back). To keep both, import the old one under another name instead:
#   guardctl guardian import OldHost --signing "$backup\$name-signing.pfx" --encryption "$backup\$name-encryption.pfx"
guardctl guardian import $name --dir $backup --force --allow-expired
if ($LASTEXITCODE -ne 0) { throw "guardctl could not import $name" }
guardctl guardian list

# Register the VMs again, and check that this host can start each of them.
foreach ($config in Get-ChildItem -Path 'D:\VMs' -Recurse -Filter *.vmcx) {
    Import-VM -Path $config.FullName
}
foreach ($kp in Get-ChildItem -Path $backup -Filter *.kp) {
    guardctl kp show $kp.FullName    # ends with: This host can start the VM ...
}

# --- If Hyper-V says "an error occurred while applying security changes" ----
# (a guardian's certificates were deleted, or Remove-HgsGuardian left pairs
# behind): find and repair, then restore what was moved aside if needed.
guardctl store check
guardctl store check --repair
guardctl guardian list --removed
