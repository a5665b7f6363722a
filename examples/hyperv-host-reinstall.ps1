# Reinstalling a Hyper-V host without losing its VMs' virtual TPMs.
#
# A vTPM VM's key protector is wrapped for the host's guardian (by default
# "UntrustedGuardian"). Keep that guardian, with its private keys, across the
# reinstall: export it before, import it after. guardctl keeps the copy (on
# any OS) and checks it; New-HgsGuardian brings it back into Hyper-V.

# --- 1. Before the reinstall, on the old host (elevated PowerShell) ---------
# Export the guardian's two certificates with their private keys, as the usual
# scripts do, to a PFX pair under one password.
$name = 'UntrustedGuardian'
$password = Read-Host -AsSecureString -Prompt "Password for the PFX files"
Get-HgsGuardian -Name $name
$store = 'Cert:\LocalMachine\Shielded VM Local Certificates'
$signing = Get-ChildItem -Path $store | Where-Object { $_.Subject -like "CN=Shielded VM Signing Certificate ($name)*" }
$encryption = Get-ChildItem -Path $store | Where-Object { $_.Subject -like "CN=Shielded VM Encryption Certificate ($name)*" }
Export-PfxCertificate -Cert $signing -FilePath "E:\backup\$name-signing.pfx" -Password $password -CryptoAlgorithmOption TripleDES_SHA1
Export-PfxCertificate -Cert $encryption -FilePath "E:\backup\$name-encryption.pfx" -Password $password -CryptoAlgorithmOption TripleDES_SHA1

# Keep the pair in a guardctl store too (this checks that both files open,
# hold their private keys and belong together), and see which VMs it opens.
guardctl --store E:\backup\store guardian import $name --dir E:\backup    # asks for the password
foreach ($vm in Get-VM) {
    $kp = Get-VMKeyProtector -VMName $vm.Name
    if ($kp.Length -gt 4) {
        [IO.File]::WriteAllBytes("E:\backup\$($vm.Name).kp", $kp)
        guardctl --store E:\backup\store kp show "E:\backup\$($vm.Name).kp"
    }
}

# --- 2. After the reinstall, on the new host (elevated PowerShell) ----------
# guardctl writes the pair again (--legacy: 3DES/SHA-1, which Windows Server
# 2016 also reads), and New-HgsGuardian imports it, as the original guardian.
guardctl --store E:\backup\store guardian export $name --dir E:\restore --legacy    # asks for it twice
New-HgsGuardian -Name $name -SigningCertificate "E:\restore\$name-signing.pfx" -SigningCertificatePassword $password -EncryptionCertificate "E:\restore\$name-encryption.pfx" -EncryptionCertificatePassword $password -AllowExpired -AllowUntrustedRoot
Get-HgsGuardian -Name $name

# Register the VMs again; each opens with its own key protector.
foreach ($config in Get-ChildItem -Path 'D:\VMs' -Recurse -Filter *.vmcx) {
    Import-VM -Path $config.FullName
}
