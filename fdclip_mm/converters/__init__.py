from .fd_to_backbone import convert_fd_checkpoint, extract_student, read_state_dict, save_state_dict

__all__ = ['convert_fd_checkpoint', 'extract_student', 'read_state_dict', 'save_state_dict']
