# Reinstalling a Hyper-V host without losing its VMs' virtual TPMs
# (docs/hyperv.md walks through it).
#
# A vTPM VM's key protector is wrapped for the host's guardian, by default
# "UntrustedGuardian": two certificates with private keys in the machine
# store "Shielded VM Local Certificates". On Windows, guardctl works on that
# store itself (--store hyperv, the default there). Export the guardian
# before the reinstall, import it after; nothing else is needed.
#
# Run one phase at a time, in an elevated PowerShell, on its host:
#
#   .\hyperv-host-reinstall.ps1 -Phase Before -Backup E:\backup
#       on the old host, before the reinstall: check the store, export the
#       guardian as a PFX pair, save each VM's key protector, and prove the
#       copy opens (guardian import --dry-run decrypts both files and checks
#       each private key against its certificate and the pair against the
#       guardian in this store, writing nothing: no key lands on disk
#       unencrypted).
#   .\hyperv-host-reinstall.ps1 -Phase After -Backup E:\backup -VMPath D:\VMs
#       on the new host: import the guardian, register the VMs found under
#       -VMPath, and check that this host can start each of them.
#   .\hyperv-host-reinstall.ps1 -Phase Repair
#       when Hyper-V says "an error occurred while applying security
#       changes" (a guardian's certificates were deleted, or
#       Remove-HgsGuardian left pairs behind): find and repair.
#
# -Force replaces a guardian of the same name (on the new host, the one
# Hyper-V made when a vTPM was first enabled; it goes to the "guardctl
# Removed Guardians" store and 'guardctl guardian restore NAME' brings it
# back) and, before the reinstall, an earlier export in -Backup.
# -AllowExpired accepts expired certificates, as New-HgsGuardian
# -AllowExpired does. Neither is passed unless you give it.
#
# guardctl asks for the PFX password itself, on each host (twice when
# exporting): it is never on a command line, in a variable of this script,
# or in a file. For an unattended run, give -PasswordFile FILE (a file only
# Administrators can read, deleted afterwards).
#
# guardctl.exe: from the release archive for Windows (README, "Install"),
# in a folder on the PATH such as C:\Program Files\guardctl.
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [ValidateSet('Before', 'After', 'Repair')]
    [string]$Phase,
    [string]$Backup = 'E:\backup',
    [string]$VMPath,
    [string]$Name = 'UntrustedGuardian',
    [string]$PasswordFile,
    [switch]$Force,
    [switch]$AllowExpired
)
$ErrorActionPreference = 'Stop'

# The flags the administrator asked for, and nothing else.
$pfxFlags = @()
if ($PasswordFile) { $pfxFlags += @('--password-file', $PasswordFile) }
$policyFlags = @()
if ($AllowExpired) { $policyFlags += '--allow-expired' }
$forceFlags = @()
if ($Force) { $forceFlags += '--force' }

switch ($Phase) {
'Before' {
    # What is there, and is it whole? store check exits 6 when it finds
    # problems: repair them first (-Phase Repair).
    guardctl store check
    if ($LASTEXITCODE -ne 0) { throw "store check found problems (exit $LASTEXITCODE): run -Phase Repair first, then export" }
    guardctl guardian list
    if ($LASTEXITCODE -ne 0) { throw "guardctl could not list the guardians (exit $LASTEXITCODE)" }
    # Both certificates with their private keys, as NAME-signing.pfx and
    # NAME-encryption.pfx (on Windows readable by you, Administrators and
    # SYSTEM only). --legacy writes 3DES/SHA-1, which Windows Server 2016 and
    # Windows 10 before 1709 also read.
    guardctl guardian export $Name --dir $Backup @pfxFlags @forceFlags
    if ($LASTEXITCODE -ne 0) { throw "guardctl could not export $Name (exit $LASTEXITCODE); do not reinstall yet" }
    # Save each VM's key protector, to check on the new host that it can
    # start it.
    foreach ($vm in Get-VM) {
        $kp = Get-VMKeyProtector -VMName $vm.Name
        if ($kp.Length -gt 4) {
            [IO.File]::WriteAllBytes("$Backup\$($vm.Name).kp", $kp)
        }
    }
    # Prove the copy before the old host is gone: --dry-run decrypts both
    # files, checks each private key against its certificate, and compares
    # the pair with the guardian in this store, in memory only.
    guardctl guardian import $Name --dir $Backup --dry-run @pfxFlags @policyFlags
    if ($LASTEXITCODE -ne 0) { throw "the exported pair does not open or is not this host's $Name (exit $LASTEXITCODE); export it again" }
    Write-Host "The copy in $Backup opens and is this host's ${Name}: keep it off this host, then reinstall."
}
'After' {
    if (-not $VMPath) { throw "-Phase After needs -VMPath, the folder that holds the VMs (their .vmcx files)" }
    # If Hyper-V already made this host's own UntrustedGuardian, import
    # refuses (exit 4) unless -Force. To keep both, import the old one under
    # another name instead:
    #   guardctl guardian import OldHost --signing "$Backup\$Name-signing.pfx" --encryption "$Backup\$Name-encryption.pfx"
    guardctl guardian import $Name --dir $Backup @pfxFlags @policyFlags @forceFlags
    if ($LASTEXITCODE -eq 4) { throw "this host already has a guardian named ${Name}: run again with -Force to replace it (it is kept in the Removed Guardians store)" }
    if ($LASTEXITCODE -ne 0) { throw "guardctl could not import $Name (exit $LASTEXITCODE)" }
    guardctl guardian list
    if ($LASTEXITCODE -ne 0) { throw "guardctl could not list the guardians (exit $LASTEXITCODE)" }
    # Register the VMs again, and check that this host can start each of
    # them. kp show exits 8 for a key protector Hyper-V wrote (its
    # algorithms are not published, so guardctl marks it unverified);
    # whether this host holds the keys to start the VM is hostCanStart.
    foreach ($config in Get-ChildItem -Path $VMPath -Recurse -Filter *.vmcx) {
        Import-VM -Path $config.FullName
    }
    $cannot = 0
    foreach ($kp in Get-ChildItem -Path $Backup -Filter *.kp) {
        $json = guardctl kp show $kp.FullName -o json
        if ($LASTEXITCODE -ne 0 -and $LASTEXITCODE -ne 8) { throw "guardctl could not read $($kp.FullName) (exit $LASTEXITCODE)" }
        $view = $json | ConvertFrom-Json
        if ($view.hostCanStart) {
            Write-Host "$($kp.BaseName): $($view.verdict)"
        } else {
            Write-Warning "$($kp.BaseName): $($view.verdict)"
            $cannot++
        }
    }
    if ($cannot -gt 0) { throw "this host cannot start $cannot of the VMs: import the guardians named above" }
}
'Repair' {
    # store check exits 0 when the store is whole and 6 when it finds
    # problems, which --repair moves out of the way (nothing it cannot bring
    # back); then restore what was moved aside if needed.
    guardctl store check
    $found = $LASTEXITCODE
    if ($found -ne 0 -and $found -ne 6) { throw "guardctl could not check the store (exit $found)" }
    if ($found -eq 6) {
        guardctl store check --repair
        if ($LASTEXITCODE -ne 0) { throw "store check --repair left problems (exit $LASTEXITCODE)" }
    }
    guardctl guardian list --removed
    if ($LASTEXITCODE -ne 0) { throw "guardctl could not list the removed guardians (exit $LASTEXITCODE)" }
}
}
