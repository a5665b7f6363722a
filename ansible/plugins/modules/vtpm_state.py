#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: guardctl authors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: vtpm_state
short_description: Wrap a software vTPM state into a bundle, or unwrap a bundle into place
description:
  - I(state=wrapped) makes sure I(bundle) holds the swtpm state at I(path), sealed for I(owner)
    and I(guardians) (C(guardctl vtpm wrap)). A bundle that already holds the same state for the
    same guardians is left alone.
  - I(state=unwrapped) makes sure the state in I(bundle) is at I(path) (C(guardctl vtpm unwrap)).
    A state that is already there, the same, is left alone.
  - guardctl compares what the files mean (the state's contents, the guardians' certificates),
    never its own re-encodings. In check mode it runs with C(--dry-run).
version_added: 0.1.0
author: guardctl authors
options:
  state:
    description: C(wrapped) or C(unwrapped).
    type: str
    choices: [wrapped, unwrapped]
    required: true
  path:
    description: The swtpm state directory (libvirt) or linear state file (Proxmox).
    type: path
    required: true
  bundle:
    description: The bundle file.
    type: path
    required: true
  owner:
    description: Owner guardian of a new bundle (its private keys must be in the store). Required to wrap.
    type: str
  guardians:
    description: Other guardians that may open a new bundle.
    type: list
    elements: str
    default: []
  key_file:
    description: To wrap, the key of a state swtpm encrypts with a key; to unwrap, where that key is written (0600).
    type: path
  key_format:
    description: Format of I(key_file) when wrapping.
    type: str
    choices: [hex, binary]
    default: hex
  passphrase_file:
    description: To wrap, the passphrase of a state swtpm encrypts with one; to unwrap, where it is written (0600).
    type: path
  volatile:
    description: Volatile state found when wrapping.
    type: str
    choices: [refuse, include, drop]
    default: refuse
  vm_uuid:
    description: The VM's UUID, recorded in a new bundle.
    type: str
  vm_name:
    description: The VM's name, recorded in a new bundle.
    type: str
  chown:
    description: When unwrapping, give the state to C(USER[:GROUP]) (libvirt runs swtpm as tss).
    type: str
  force:
    description: Replace a bundle or state that holds something else (the old one is kept as a backup).
    type: bool
    default: false
extends_documentation_fragment:
  - guardctl.guardctl.guardctl
'''

EXAMPLES = r'''
- name: Seal vm1's TPM for the other node
  guardctl.guardctl.vtpm_state:
    state: wrapped
    path: /var/lib/libvirt/swtpm/{{ vm_uuid }}/tpm2
    bundle: /srv/migrate/vm1.vtpm
    owner: node1
    guardians: [node2]
    passphrase_file: /root/vm1.secret

- name: Put it in place on node2
  guardctl.guardctl.vtpm_state:
    state: unwrapped
    bundle: /srv/migrate/vm1.vtpm
    path: /var/lib/libvirt/swtpm/{{ vm_uuid }}/tpm2
    passphrase_file: /root/vm1.secret
    chown: tss:tss
'''

RETURN = r'''
result:
  description: What guardctl reported (C(vtpm wrap -o json) or C(vtpm unwrap -o json)).
  returned: success
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.guardctl.guardctl.plugins.module_utils.guardctl import (
    Guardctl, GuardctlError, guardctl_argument_spec)


def main():
    spec = guardctl_argument_spec()
    spec.update(
        state=dict(type='str', choices=['wrapped', 'unwrapped'], required=True),
        path=dict(type='path', required=True),
        bundle=dict(type='path', required=True),
        owner=dict(type='str'),
        guardians=dict(type='list', elements='str', default=[]),
        key_file=dict(type='path'),
        key_format=dict(type='str', choices=['hex', 'binary'], default='hex'),
        passphrase_file=dict(type='path'),
        volatile=dict(type='str', choices=['refuse', 'include', 'drop'], default='refuse'),
        vm_uuid=dict(type='str'),
        vm_name=dict(type='str'),
        chown=dict(type='str'),
        force=dict(type='bool', default=False),
    )
    module = AnsibleModule(
        argument_spec=spec,
        supports_check_mode=True,
        mutually_exclusive=[('key_file', 'passphrase_file')],
        required_if=[('state', 'wrapped', ('owner',))],
    )
    p = module.params
    g = Guardctl(module)
    if p['state'] == 'wrapped':
        args = ['vtpm', 'wrap', p['path'], '--owner', p['owner'], '--out', p['bundle'], '--volatile', p['volatile']]
        for n in p['guardians']:
            args += ['--guardian', n]
        if p['key_file']:
            args += ['--key-file', p['key_file'], '--key-format', p['key_format']]
        if p['passphrase_file']:
            args += ['--passphrase-file', p['passphrase_file']]
        if p['vm_uuid']:
            args += ['--vm-uuid', p['vm_uuid']]
        if p['vm_name']:
            args += ['--vm-name', p['vm_name']]
    else:
        args = ['vtpm', 'unwrap', p['bundle'], '--to', p['path']]
        if p['key_file']:
            args += ['--key-out', p['key_file']]
        if p['passphrase_file']:
            args += ['--passphrase-out', p['passphrase_file']]
        if p['chown']:
            args += ['--chown', p['chown']]
    if p['force']:
        args.append('--force')
    try:
        _, doc = g.run(args)
    except GuardctlError as e:
        g.fail(e)
    module.exit_json(changed=bool(doc.get('changed')), result=doc)


if __name__ == '__main__':
    main()
