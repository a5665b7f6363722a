#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: guardctl authors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: guardian
short_description: Make sure a guardian is (or is not) in a guardctl store
description:
  - Creates a guardian, imports one from a PFX pair or from a public guardian file, or removes one,
    by running the C(guardctl) binary on the managed node.
  - Whether anything changed is what guardctl reports in its JSON output. Importing a guardian the
    store already holds with the same thumbprints changes nothing.
  - In check mode guardctl runs with C(--dry-run), so it reads and checks everything, writes nothing,
    and reports what it would change.
version_added: 0.1.0
author: guardctl authors
options:
  name:
    description: Name of the guardian in the store.
    type: str
    required: true
  state:
    description:
      - C(present) creates the guardian when none of that name exists, or, with I(public),
        I(signing)/I(encryption) or I(dir), imports it.
      - C(absent) removes it (to the store's trash, unless I(purge)).
    type: str
    choices: [present, absent]
    default: present
  public:
    description: Public guardian file (as C(guardctl guardian export --public) writes) to import.
    type: path
  signing:
    description: PFX file with the signing certificate and its private key. Goes with I(encryption).
    type: path
  encryption:
    description: PFX file with the encryption certificate and its private key. Goes with I(signing).
    type: path
  dir:
    description: Import C(DIR/NAME-signing.pfx) and C(DIR/NAME-encryption.pfx).
    type: path
  password_file:
    description: File on the managed node holding the PFX password.
    type: path
  password:
    description: The PFX password. It is passed to guardctl on standard input, never as an argument.
    type: str
  force:
    description: Replace an existing guardian of the same name that differs (it goes to the trash).
    type: bool
    default: false
  allow_expired:
    description: Accept expired certificates on import.
    type: bool
    default: false
  allow_untrusted_root:
    description: Accept certificates that do not chain to a trusted root on import.
    type: bool
    default: false
  key_size:
    description: RSA key size of a guardian this module creates.
    type: int
    choices: [2048, 3072, 4096]
    default: 2048
  valid_years:
    description: Years the certificates of a created guardian are valid.
    type: int
    default: 10
  host:
    description: Host name in the subjects of a created guardian (default the node's host name).
    type: str
  purge:
    description: With I(state=absent), delete the guardian instead of moving it to the trash.
    type: bool
    default: false
extends_documentation_fragment:
  - guardctl.guardctl.guardctl
'''

EXAMPLES = r'''
- name: This node has its own guardian
  guardctl.guardctl.guardian:
    name: UntrustedGuardian

- name: It holds the public guardian of node2
  guardctl.guardctl.guardian:
    name: node2
    public: /var/tmp/guardians/node2.guardian.xml

- name: Bring back a guardian from its backup
  guardctl.guardctl.guardian:
    name: UntrustedGuardian
    dir: /media/backup
    password: "{{ vault_guardian_password }}"
'''

RETURN = r'''
guardian:
  description: The guardian as C(guardctl guardian show -o json) describes it (absent after removal or in check mode when it would be created).
  returned: when present
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.guardctl.guardctl.plugins.module_utils.guardctl import (
    EXIT_NOT_FOUND, Guardctl, GuardctlError, guardctl_argument_spec)


def main():
    spec = guardctl_argument_spec()
    spec.update(
        name=dict(type='str', required=True),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        public=dict(type='path'),
        signing=dict(type='path'),
        encryption=dict(type='path'),
        dir=dict(type='path'),
        password_file=dict(type='path'),
        password=dict(type='str', no_log=True),
        force=dict(type='bool', default=False),
        allow_expired=dict(type='bool', default=False),
        allow_untrusted_root=dict(type='bool', default=False),
        key_size=dict(type='int', choices=[2048, 3072, 4096], default=2048),
        valid_years=dict(type='int', default=10),
        host=dict(type='str'),
        purge=dict(type='bool', default=False),
    )
    module = AnsibleModule(
        argument_spec=spec,
        supports_check_mode=True,
        mutually_exclusive=[('public', 'signing'), ('public', 'dir'), ('signing', 'dir'),
                            ('password', 'password_file'), ('public', 'password'), ('public', 'password_file')],
        required_together=[('signing', 'encryption')],
    )
    p = module.params
    g = Guardctl(module)
    name = p['name']
    try:
        if p['state'] == 'absent':
            args = ['guardian', 'remove', name, '--yes']
            if p['purge']:
                args.append('--purge')
            rc, doc = g.run(args, ok_codes=(0, EXIT_NOT_FOUND))
            module.exit_json(changed=rc == 0 and bool(doc and doc.get('changed')))

        importing = p['public'] or p['signing'] or p['dir']
        if not importing:
            _, listed = g.run(['guardian', 'list'], changes=False)
            for e in listed or []:
                if e.get('name') == name:
                    module.exit_json(changed=False, guardian=e)
            args = ['guardian', 'create', name, '--key-size', str(p['key_size']), '--valid-years', str(p['valid_years'])]
            if p['host']:
                args += ['--host', p['host']]
            _, doc = g.run(args)
            module.exit_json(changed=bool(doc.get('changed')), guardian=doc)

        args = ['guardian', 'import', name]
        data = None
        if p['public']:
            args += ['--public', p['public']]
        else:
            if p['dir']:
                args += ['--dir', p['dir']]
            else:
                args += ['--signing', p['signing'], '--encryption', p['encryption']]
            if p['password'] is not None:
                args += ['--password-file', '-']
                data = p['password']
            elif p['password_file']:
                args += ['--password-file', p['password_file']]
            else:
                module.fail_json(msg='importing a PFX pair needs password or password_file')
        for flag in ('force', 'allow_expired', 'allow_untrusted_root'):
            if p[flag]:
                args.append('--' + flag.replace('_', '-'))
        _, doc = g.run(args, data=data)
        module.exit_json(changed=bool(doc.get('changed')), guardian=doc)
    except GuardctlError as e:
        g.fail(e)


if __name__ == '__main__':
    main()
