# -*- coding: utf-8 -*-
# Copyright: guardctl authors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Runs the guardctl binary for the modules of guardctl.guardctl.

Every command is run with ``-o json --no-input``: guardctl then writes one
JSON document to standard output and never prompts. In check mode, commands
that change something get ``--dry-run``, so guardctl does all of its reading
and checking, writes nothing, and reports the same ``changed`` the real run
would. Secrets are only ever passed on standard input or as file paths,
never as arguments.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible.module_utils.common.text.converters import to_native

# Exit codes of guardctl (docs/cli.md).
EXIT_NOT_FOUND = 3
EXIT_EXISTS = 4


def guardctl_argument_spec():
    """The options every module of the collection takes."""
    return dict(
        binary=dict(type='str', default='guardctl'),
        store=dict(type='str'),
    )


class GuardctlError(Exception):
    def __init__(self, rc, stderr, cmd, stdout=''):
        super(GuardctlError, self).__init__(stderr)
        self.rc = rc
        self.stderr = stderr
        self.stdout = stdout
        self.cmd = cmd

    def message(self):
        lines = [l for l in self.stderr.splitlines() if l.strip()]
        if not lines:
            return 'guardctl exited with code %d' % self.rc
        return ' '.join(l.replace('guardctl: ', '', 1) for l in lines)


class Guardctl(object):
    """One guardctl binary and store, as a module's options name them."""

    def __init__(self, module):
        self.module = module
        binary = module.params['binary']
        if '/' in binary:
            self.binary = binary
        else:
            self.binary = module.get_bin_path(binary, required=True)
        self.store = module.params.get('store')

    def command(self, args, dry_run=False):
        cmd = [self.binary]
        if self.store:
            cmd += ['--store', self.store]
        cmd += ['-o', 'json', '--no-input'] + list(args)
        if dry_run:
            cmd.append('--dry-run')
        return cmd

    def run(self, args, data=None, changes=True, ok_codes=(0,)):
        """Run guardctl and return (rc, parsed JSON or None).

        changes says whether the command changes something: in check mode
        it is then run with --dry-run. data goes to standard input (a
        password, never logged). A code outside ok_codes raises
        GuardctlError with guardctl's own error message.
        """
        cmd = self.command(args, dry_run=changes and self.module.check_mode)
        rc, out, err = self.module.run_command(cmd, data=data, binary_data=True,
                                               environ_update={'GUARDCTL_PASSWORD': ''})
        if rc not in ok_codes:
            raise GuardctlError(rc, to_native(err), cmd, to_native(out))
        doc = None
        if out.strip():
            try:
                doc = json.loads(out)
            except ValueError as e:
                self.module.fail_json(msg='guardctl wrote output that is not JSON: %s' % to_native(e), cmd=cmd, rc=rc)
        return rc, doc

    def fail(self, e, **kwargs):
        self.module.fail_json(msg=e.message(), rc=e.rc, cmd=e.cmd, stderr=e.stderr, **kwargs)
