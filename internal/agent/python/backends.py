# backends.py: the backend switch: monitoring (3.12+) or settrace

class _Backends(object):
    # backends
    def _install(self):
        if not self.installed:
            self.installed = True
            try:
                (self._mon_install if self.backend == 'monitoring' else self._tr_install)()
            except BaseException:
                self._uninstall()
                raise

    def _uninstall(self):
        if self.installed:
            self.installed = False
            try:
                (self._mon_uninstall if self.backend == 'monitoring' else self._tr_uninstall)()
            except Exception:
                pass

    def _changed(self, path):
        self.ccache.clear()
        if not self.installed:
            return
        if self.backend == 'monitoring':
            self._mon_changed(path)
        else:
            self._tr_changed(path)

    def _steps_changed(self, started):
        if self.installed and self.backend == 'monitoring':
            self._mon_events(started)
